// Mask painting and canvas extension for inpaint/outpaint. Two stacked canvases of the image's
// size: the base image (transparent where the canvas was extended) and the mask (opaque where
// the image should change). Running an edit needs the server's editing API, detected at start.

import { errorText } from "./messages.js";

const MAX_SIDE = 4096;
// The mask is read by its alpha only; the colour is just how it shows over the image.
const MASK_COLOUR = "rgb(229, 40, 80)";
const MASK_RGB = [229, 40, 80];

export class MaskEditor {
  constructor({ api, i18n, root, getModel, onSubmit }) {
    Object.assign(this, { api, i18n, root, getModel, onSubmit });
    const $ = (id) => root.querySelector(`#${id}`);
    this.el = {
      status: $("edit-status"), empty: $("edit-empty"), editor: $("editor"), base: $("edit-base"), mask: $("edit-mask"),
      brush: $("tool-brush"), eraser: $("tool-eraser"), size: $("brush-size"), sizeOut: $("brush-size-out"),
      invert: $("mask-invert"), fill: $("mask-fill"), clear: $("mask-clear"), dims: $("edit-dims"), apply: $("ext-apply"),
      left: $("ext-left"), right: $("ext-right"), up: $("ext-up"), down: $("ext-down"), prompt: $("edit-prompt"),
      run: $("edit-run"), error: $("edit-error"),
    };
    this.available = false;
    this.erasing = false;
    this.last = null;
    const e = this.el;
    e.brush.addEventListener("click", () => this.setEraser(false));
    e.eraser.addEventListener("click", () => this.setEraser(true));
    e.size.addEventListener("input", () => { e.sizeOut.value = e.size.value; });
    e.invert.addEventListener("click", () => this.invert());
    e.fill.addEventListener("click", () => this.fill());
    e.clear.addEventListener("click", () => this.clear());
    e.apply.addEventListener("click", () => this.extend());
    e.run.addEventListener("click", () => this.run());
    e.mask.addEventListener("pointerdown", (ev) => this.down(ev));
    e.mask.addEventListener("pointermove", (ev) => this.move(ev));
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) e.mask.addEventListener(type, () => { this.last = null; });
    e.editor.addEventListener("keydown", (ev) => this.key(ev));
    window.addEventListener("zx:lang", () => this.renderStatus());
  }

  setAvailable(available) {
    this.available = available;
    this.renderStatus();
  }

  renderStatus() {
    const e = this.el;
    e.status.textContent = this.i18n.t(this.available ? "edit.available" : "edit.unavailable");
    e.status.classList.toggle("warning", !this.available);
    e.run.disabled = !this.available || !this.image;
    this.root.dataset.editApi = this.available ? "available" : "missing";
    if (this.image) e.dims.textContent = `${e.base.width}×${e.base.height}`;
  }

  async load(job, image) {
    const blob = await this.api.imageBlob(image.url);
    const bitmap = await createImageBitmap(blob);
    const { base, mask } = this.el;
    base.width = mask.width = bitmap.width;
    base.height = mask.height = bitmap.height;
    base.getContext("2d").drawImage(bitmap, 0, 0);
    this.original = document.createElement("canvas");
    this.original.width = bitmap.width;
    this.original.height = bitmap.height;
    this.original.getContext("2d").drawImage(bitmap, 0, 0);
    this.pad = { left: 0, right: 0, top: 0, bottom: 0 };
    this.image = { job, image };
    this.el.prompt.value = job.request.prompt;
    this.el.editor.hidden = false;
    this.el.empty.hidden = true;
    this.clear();
    this.renderStatus();
  }

  setEraser(on) {
    this.erasing = on;
    this.el.brush.setAttribute("aria-pressed", String(!on));
    this.el.eraser.setAttribute("aria-pressed", String(on));
  }

  point(ev) {
    const c = this.el.mask;
    const r = c.getBoundingClientRect();
    return { x: ((ev.clientX - r.left) * c.width) / r.width, y: ((ev.clientY - r.top) * c.height) / r.height, scale: c.width / r.width };
  }

  down(ev) {
    ev.preventDefault();
    this.el.mask.setPointerCapture?.(ev.pointerId);
    this.last = this.point(ev);
    this.stroke(this.last, this.last);
  }

  move(ev) {
    if (!this.last || !(ev.buttons & 1)) return;
    const p = this.point(ev);
    this.stroke(this.last, p);
    this.last = p;
  }

  stroke(a, b) {
    const ctx = this.el.mask.getContext("2d");
    ctx.save();
    ctx.globalCompositeOperation = this.erasing ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = MASK_COLOUR;
    // The brush size is in screen pixels, so it feels the same however large the image is.
    ctx.lineWidth = Number(this.el.size.value) * a.scale;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x + 0.01, b.y);
    ctx.stroke();
    ctx.restore();
  }

  clear() {
    const c = this.el.mask;
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
  }

  fill() {
    const c = this.el.mask;
    const ctx = c.getContext("2d");
    ctx.fillStyle = MASK_COLOUR;
    ctx.fillRect(0, 0, c.width, c.height);
  }

  invert() {
    const c = this.el.mask;
    const ctx = c.getContext("2d");
    const data = ctx.getImageData(0, 0, c.width, c.height);
    const px = data.data; // RGBA bytes, (H * W * 4)
    for (let i = 0; i < px.length; i += 4) {
      [px[i], px[i + 1], px[i + 2]] = MASK_RGB;
      px[i + 3] = 255 - px[i + 3];
    }
    ctx.putImageData(data, 0, 0);
  }

  // Grow the canvas; the new border is part of the mask (that is what outpainting fills).
  extend() {
    const e = this.el;
    const n = (input) => Math.max(0, Math.round((Number(input.value) || 0) / 16) * 16);
    const [l, r, u, d] = [n(e.left), n(e.right), n(e.up), n(e.down)];
    const w = e.base.width + l + r, h = e.base.height + u + d;
    if (w > MAX_SIDE || h > MAX_SIDE) {
      this.showError(this.i18n.t("edit.tooBig", { w, h }));
      return;
    }
    this.showError("");
    for (const [canvas, border] of [[e.base, false], [e.mask, true]]) {
      const copy = document.createElement("canvas");
      copy.width = canvas.width;
      copy.height = canvas.height;
      copy.getContext("2d").drawImage(canvas, 0, 0);
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext("2d");
      if (border) {
        ctx.fillStyle = MASK_COLOUR;
        ctx.fillRect(0, 0, w, h);
        ctx.clearRect(l, u, copy.width, copy.height);
      }
      ctx.drawImage(copy, l, u);
    }
    this.pad.left += l;
    this.pad.right += r;
    this.pad.top += u;
    this.pad.bottom += d;
    for (const input of [e.left, e.right, e.up, e.down]) input.value = 0;
    this.renderStatus();
  }

  // Masked pixels, for tests and for "is there anything to edit".
  maskedPixels() {
    const c = this.el.mask;
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let count = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) count++;
    return count;
  }

  key(ev) {
    if (ev.target.matches("input, textarea, select")) return;
    const size = this.el.size;
    if (ev.key === "[" || ev.key === "]") {
      size.value = Number(size.value) + (ev.key === "]" ? 4 : -4);
      this.el.sizeOut.value = size.value;
    } else if (ev.key === "e" || ev.key === "E") this.setEraser(!this.erasing);
    else if (ev.key === "i" || ev.key === "I") this.invert();
    else return;
    ev.preventDefault();
  }

  showError(message) {
    this.el.error.textContent = message;
    this.el.error.hidden = !message;
  }

  // The native edit API: extended canvas → outpaint of the original image by the added pixels;
  // a painted mask → inpaint (white = repaint); neither → img2img of the whole image.
  async run() {
    if (!this.available || !this.image) return;
    const e = this.el;
    const body = { prompt: e.prompt.value, n: 1 };
    const model = this.getModel();
    if (model) body.model = model;
    const pad = this.pad;
    if (pad.left + pad.right + pad.top + pad.bottom > 0) {
      Object.assign(body, { mode: "outpaint", image: this.original.toDataURL("image/png"), outpaint: { ...pad } });
    } else if (this.maskedPixels() > 0) {
      Object.assign(body, { mode: "inpaint", image: e.base.toDataURL("image/png"), mask: this.maskPng() });
    } else {
      Object.assign(body, { mode: "img2img", image: e.base.toDataURL("image/png") });
    }
    e.run.disabled = true;
    this.showError("");
    try {
      await this.onSubmit(body);
    } catch (err) {
      this.showError(this.i18n.t("edit.failed", { message: errorText(this.i18n, err) }));
    } finally {
      this.renderStatus();
    }
  }

  // Black and white, same size as the image: white where the mask is painted.
  maskPng() {
    const c = this.el.mask;
    const out = document.createElement("canvas");
    out.width = c.width;
    out.height = c.height;
    const src = c.getContext("2d").getImageData(0, 0, c.width, c.height);
    const dst = out.getContext("2d").createImageData(c.width, c.height);
    for (let i = 0; i < src.data.length; i += 4) {
      const v = src.data[i + 3] > 127 ? 255 : 0;
      dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = v;
      dst.data[i + 3] = 255;
    }
    out.getContext("2d").putImageData(dst, 0, 0);
    return out.toDataURL("image/png");
  }
}
