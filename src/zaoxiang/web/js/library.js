// History (every job, newest first) and gallery (finished images, searchable by prompt), both read
// from the server's job store, plus the details dialog of one image.

import { errorText } from "./messages.js";

const PAGE = 24;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function params(job) {
  return job.resolved || job.request;
}

function summary(job) {
  const r = params(job);
  const parts = [];
  if (r.width && r.height) parts.push(`${r.width}×${r.height}`);
  if (r.steps) parts.push(`${r.steps} steps`);
  if (r.seed !== null && r.seed !== undefined) parts.push(`seed ${r.seed}`);
  if (r.model) parts.push(r.model);
  return parts.join(" · ");
}

export class History {
  constructor({ api, i18n, list, empty, more, onRecall, onOpenImage, onDelete }) {
    Object.assign(this, { api, i18n, list, empty, more, onRecall, onOpenImage, onDelete });
    this.cursor = null;
    this.jobs = [];
    more.addEventListener("click", () => this.load(true));
    window.addEventListener("zx:lang", () => this.render());
  }

  async load(append = false) {
    const page = await this.api.list({ limit: PAGE, cursor: append ? this.cursor : "" });
    this.jobs = append ? this.jobs.concat(page.data) : page.data;
    this.cursor = page.next_cursor;
    this.render();
  }

  render() {
    const t = (k, v) => this.i18n.t(k, v);
    this.list.replaceChildren(...this.jobs.map((job) => {
      const thumb = el("div", { class: "thumb", "aria-hidden": "true" });
      const first = job.images[0];
      if (first) {
        const img = el("img", { alt: "", loading: "lazy", width: "56", height: "56" });
        this.api.imageSrc(first.url).then((s) => { img.src = s; }).catch(() => {});
        thumb.append(img);
      } else {
        thumb.classList.add(`status-${job.status}`);
      }
      const open = first
        ? el("button", { class: "thumb-button", type: "button", "aria-label": t("gallery.open", { prompt: job.request.prompt }), onclick: () => this.onOpenImage(job, first) }, thumb)
        : thumb;
      const status = job.status === "succeeded" ? "" : job.status === "queued" ? t("job.queued") : job.status === "running" ? t("job.running")
        : job.status === "cancelled" ? t("job.cancelled") : t("job.failed", { message: errorText(this.i18n, job.error) });
      const body = el("div", { class: "history-body" },
        el("p", { class: "history-prompt", text: job.request.prompt }),
        el("p", { class: "history-meta" },
          el("span", { text: summary(job) }),
          el("time", { datetime: new Date(job.created_at * 1000).toISOString(), text: this.i18n.relative(job.created_at) })),
      );
      if (status) body.append(el("p", { class: `badge status-${job.status}`, text: status }));
      const actions = el("div", { class: "history-actions" },
        el("button", { class: "btn ghost small recall", type: "button", "aria-label": t("history.recallLabel", { prompt: job.request.prompt }), text: t("common.recall"), onclick: () => this.onRecall(job) }));
      if (["succeeded", "failed", "cancelled"].includes(job.status)) {
        actions.append(el("button", { class: "btn ghost small delete", type: "button", "aria-label": `${t("common.delete")}: ${job.request.prompt}`, text: t("common.delete"), onclick: () => this.onDelete(job) }));
      }
      return el("li", { class: "history-item", "data-job-id": job.id }, open, body, actions);
    }));
    this.empty.hidden = this.jobs.length > 0;
    this.more.hidden = !this.cursor;
  }
}

export class Gallery {
  constructor({ api, i18n, grid, empty, more, search, onOpenImage }) {
    Object.assign(this, { api, i18n, grid, empty, more, search, onOpenImage });
    this.cursor = null;
    this.jobs = [];
    this.query = "";
    this.seq = 0;
    let timer;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { this.query = search.value.trim(); this.load(); }, 250);
    });
    more.addEventListener("click", () => this.load(true));
    window.addEventListener("zx:lang", () => this.render());
  }

  async load(append = false) {
    const seq = ++this.seq; // a slower, older search must not overwrite a newer one
    const page = await this.api.list({ q: this.query, status: "succeeded", limit: PAGE, cursor: append ? this.cursor : "" });
    if (seq !== this.seq) return;
    this.jobs = append ? this.jobs.concat(page.data) : page.data;
    this.cursor = page.next_cursor;
    this.render();
  }

  render() {
    const t = (k, v) => this.i18n.t(k, v);
    const items = [];
    for (const job of this.jobs) {
      for (const image of job.images) {
        const img = el("img", { alt: job.request.prompt, loading: "lazy", width: String(image.width), height: String(image.height) });
        this.api.imageSrc(image.url).then((s) => { img.src = s; }).catch(() => {});
        const button = el("button", { class: "gallery-item", type: "button", "aria-label": t("gallery.open", { prompt: job.request.prompt }), onclick: () => this.onOpenImage(job, image) },
          img, el("span", { class: "gallery-caption", text: job.request.prompt }));
        items.push(el("li", { "data-job-id": job.id, "data-image-id": image.id }, button));
      }
    }
    this.grid.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
    this.empty.textContent = this.query ? t("gallery.noMatch", { q: this.query }) : t("gallery.empty");
    this.more.hidden = !this.cursor;
  }
}

export class DetailDialog {
  constructor({ api, i18n, dialog, onRecall, onEdit, onDelete }) {
    Object.assign(this, { api, i18n, dialog, onRecall, onEdit, onDelete });
    this.current = null;
    const $ = (id) => dialog.querySelector(`#${id}`);
    this.img = $("detail-image");
    this.meta = $("detail-meta");
    this.download = $("detail-download");
    dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
    $("detail-recall").addEventListener("click", () => { dialog.close(); this.onRecall(this.current.job); });
    $("detail-edit").addEventListener("click", () => { dialog.close(); this.onEdit(this.current.job, this.current.image); });
    $("detail-delete").addEventListener("click", async () => {
      if (!confirm(this.i18n.t("detail.deleteConfirm"))) return;
      dialog.close();
      await this.onDelete(this.current.job);
    });
    dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); }); // backdrop
    window.addEventListener("zx:lang", () => { if (dialog.open) this.render(); });
  }

  async open(job, image) {
    this.current = { job, image };
    this.render();
    const src = await this.api.imageSrc(image.url).catch(() => "");
    this.img.src = src;
    this.download.href = src;
    this.download.download = `zaoxiang-${image.seed}.${(image.content_type.split("/")[1] || "png").replace("jpeg", "jpg")}`;
    if (!this.dialog.open) this.dialog.showModal();
  }

  render() {
    const { job, image } = this.current;
    const t = (k, v) => this.i18n.t(k, v);
    const r = params(job);
    this.img.alt = job.request.prompt;
    this.img.width = image.width;
    this.img.height = image.height;
    const total = job.started_at && job.finished_at ? `${(job.finished_at - job.started_at).toFixed(1)} s` : "—";
    const rows = [
      ["detail.prompt", r.prompt],
      ["detail.negative", r.negative_prompt || "—"],
      ["detail.model", r.model ? `${r.model}${job.model_revision ? ` (${job.model_revision})` : ""}` : "—"],
      ["detail.size", `${image.width}×${image.height}`],
      ["detail.steps", r.steps ?? "—"],
      ["detail.guidance", r.guidance ?? "—"],
      ["detail.seed", image.seed],
      ["detail.turbo", r.turbo ? t("detail.yes") : t("detail.no")],
      ["detail.created", this.i18n.date(job.created_at)],
      ["detail.duration", total],
      ["detail.cached", job.cache_hit ? t("detail.yes") : t("detail.no")],
    ];
    this.meta.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: t(k) }), el("dd", { text: String(v) })]));
  }
}
