// The generation form: reads a GenerationRequest out of the fields and writes one back (recall).

const SIZE_MULTIPLE = 16;

export function sizeFor(ratio, base) {
  // Keep the pixel count near base², snapped to the model's multiple of 16.
  const [a, b] = ratio.split(":").map(Number);
  const snap = (v) => Math.max(64, Math.round(v / SIZE_MULTIPLE) * SIZE_MULTIPLE);
  const w = Math.sqrt((base * base * a) / b);
  return { width: snap(w), height: snap((base * base) / w) };
}

function numberOrNull(input) {
  const v = input.value.trim();
  return v === "" ? null : Number(v);
}

export class GenerateForm {
  constructor(root, i18n) {
    this.root = root;
    this.i18n = i18n;
    this.models = [];
    const $ = (id) => root.querySelector(`#${id}`);
    this.el = {
      prompt: $("prompt"), negative: $("negative"), model: $("model"), lora: $("lora"), loraScale: $("lora-scale"),
      loraField: $("lora-field"), loraScaleField: $("lora-scale-field"), base: $("base"), width: $("width"),
      height: $("height"), steps: $("steps"), guidance: $("guidance"), n: $("n"), seed: $("seed"),
      seedLock: $("seed-lock"), dice: $("seed-dice"), turbo: $("turbo"), error: $("form-error"),
    };
    const el = this.el;
    for (const radio of root.querySelectorAll('input[name="aspect"]')) {
      radio.addEventListener("change", () => this.applyAspect());
    }
    el.base.addEventListener("change", () => this.applyAspect());
    for (const input of [el.width, el.height]) {
      input.addEventListener("input", () => this.syncPresets());
    }
    el.seedLock.addEventListener("change", () => {
      el.seed.disabled = !el.seedLock.checked;
      if (el.seedLock.checked && el.seed.value === "") el.seed.value = randomSeed();
    });
    el.dice.addEventListener("click", () => {
      el.seed.value = randomSeed();
      el.seedLock.checked = true;
      el.seed.disabled = false;
    });
    el.model.addEventListener("change", () => {
      this.renderLoras();
      this.applyNativeSize();
    });
  }

  // A model that draws one size only (the built-in model: 256²) gets that size in the form, so
  // the size preset does not show 1024 for a model that cannot draw it.
  applyNativeSize() {
    const model = this.models.find((m) => m.id === this.el.model.value);
    const size = model && model.native_size;
    if (!size) return;
    this.root.querySelector('input[name="aspect"][value="1:1"]').checked = true;
    if ([...this.el.base.options].some((o) => o.value === String(size))) this.el.base.value = String(size);
    this.el.width.value = size;
    this.el.height.value = size;
  }

  setModels(models) {
    this.models = models;
    const el = this.el;
    const current = el.model.value;
    el.model.replaceChildren(
      ...models.map((m) => {
        const o = new Option(`${m.name} · ${m.family}`, m.id);
        o.selected = current ? m.id === current : m.default;
        return o;
      }),
    );
    this.renderLoras();
    if (!current) this.applyNativeSize();  // first load: the default model's size
  }

  // LoRAs are shown only when /v1/models lists them for the chosen model.
  renderLoras() {
    const el = this.el;
    const model = this.models.find((m) => m.id === el.model.value);
    const loras = (model && model.loras) || [];
    el.loraField.hidden = el.loraScaleField.hidden = loras.length === 0;
    const current = el.lora.value;
    el.lora.replaceChildren(
      new Option(this.i18n.t("form.loraNone"), ""),
      ...loras.map((l) => {
        const name = typeof l === "string" ? l : l.name || l.id;
        const o = new Option(name, name);
        o.selected = name === current;
        return o;
      }),
    );
  }

  applyAspect() {
    const chosen = this.root.querySelector('input[name="aspect"]:checked');
    const ratio = chosen ? chosen.value : "1:1";
    if (!chosen) this.root.querySelector('input[name="aspect"][value="1:1"]').checked = true;
    // "Custom" size keeps the current pixel count when only the aspect changes.
    const w = Number(this.el.width.value), h = Number(this.el.height.value);
    const base = Number(this.el.base.value) || Math.round(Math.sqrt(w * h)) || 1024;
    const { width, height } = sizeFor(ratio, base);
    this.el.width.value = width;
    this.el.height.value = height;
  }

  // Show which aspect chip and size preset the typed or recalled width × height match, if any.
  syncPresets() {
    const w = Number(this.el.width.value), h = Number(this.el.height.value);
    let ratio = null;
    for (const radio of this.root.querySelectorAll('input[name="aspect"]')) {
      const [a, b] = radio.value.split(":").map(Number);
      radio.checked = w > 0 && h > 0 && Math.abs(w / h - a / b) < 0.02;
      if (radio.checked) ratio = radio.value;
    }
    const preset = ratio && [...this.el.base.options].find((o) => {
      if (!o.value) return false;
      const size = sizeFor(ratio, Number(o.value));
      return size.width === w && size.height === h;
    });
    this.el.base.value = preset ? preset.value : "";
  }

  showError(message) {
    this.el.error.textContent = message || "";
    this.el.error.hidden = !message;
  }

  read() {
    const el = this.el;
    const req = {
      prompt: el.prompt.value,
      negative_prompt: el.negative.value,
      n: Math.max(1, Number(el.n.value) || 1),
      turbo: el.turbo.checked,
    };
    for (const [name, input] of [["width", el.width], ["height", el.height], ["steps", el.steps], ["guidance", el.guidance]]) {
      const v = numberOrNull(input);
      if (v !== null) req[name] = v;
    }
    if (el.seedLock.checked && el.seed.value !== "") req.seed = Number(el.seed.value);
    if (el.model.value) req.model = el.model.value;
    if (!el.loraField.hidden && el.lora.value) req.loras = [{ name: el.lora.value, scale: Number(el.loraScale.value) || 1 }];
    return req;
  }

  // Restore every parameter of a past request (the resolved one: its seed, size and steps).
  write(req) {
    const el = this.el;
    el.prompt.value = req.prompt || "";
    el.negative.value = req.negative_prompt || "";
    if (req.model && [...el.model.options].some((o) => o.value === req.model)) el.model.value = req.model;
    this.renderLoras();
    const lora = (req.loras || [])[0];
    el.lora.value = lora ? lora.name : "";
    el.loraScale.value = lora ? lora.scale : 1;
    el.width.value = req.width ?? "";
    el.height.value = req.height ?? "";
    el.steps.value = req.steps ?? "";
    el.guidance.value = req.guidance ?? "";
    el.n.value = req.n || 1;
    el.turbo.checked = Boolean(req.turbo);
    const seeded = req.seed !== null && req.seed !== undefined;
    el.seed.value = seeded ? req.seed : "";
    el.seedLock.checked = seeded;
    el.seed.disabled = !seeded;
    this.syncPresets();
  }

  // After a job with a random seed, show which seed it used (without locking it).
  showSeed(seed) {
    if (!this.el.seedLock.checked && seed !== undefined && seed !== null) this.el.seed.value = seed;
  }
}

function randomSeed() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0];
}
