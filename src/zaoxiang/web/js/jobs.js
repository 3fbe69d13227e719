// Jobs this page started: one card each with live progress (SSE), step previews, queue position
// and a cancel button; finished images go to the stage.

import { errorText } from "./messages.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POSITION_POLL_MS = 1500;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class JobTracker {
  constructor({ api, i18n, list, stage, announcer, onFinished, onOpenImage }) {
    this.api = api;
    this.i18n = i18n;
    this.list = list;
    this.stage = stage;
    this.announcer = announcer;
    this.onFinished = onFinished;
    this.onOpenImage = onOpenImage;
    this.entries = new Map(); // job id -> {job, card, state, abort}
    this.stageJob = null;
    window.addEventListener("zx:lang", () => {
      for (const e of this.entries.values()) this.renderCard(e);
      if (this.stageJob) this.showImages(this.stageJob);
    });
  }

  // ``send`` queues the job: a generation by default, an edit from the editor.
  async submit(req, send = (r) => this.api.submit(r)) {
    const job = await send(req);
    const entry = { job, state: { status: job.status, position: job.queue_position, step: 0, total: 0 }, abort: new AbortController() };
    this.entries.set(job.id, entry);
    entry.card = this.makeCard(entry);
    this.list.prepend(entry.card);
    this.renderCard(entry);
    if (TERMINAL.has(job.status)) await this.finish(entry, job);
    else this.watch(entry);
    return job;
  }

  makeCard(entry) {
    const li = document.createElement("li");
    li.className = "job-card";
    li.dataset.jobId = entry.job.id;
    li.innerHTML = `
      <div class="job-preview" aria-hidden="true"><img alt=""></div>
      <div class="job-body">
        <p class="job-prompt"></p>
        <p class="job-state"></p>
        <progress class="job-progress" max="1" value="0"></progress>
      </div>
      <button class="btn danger-ghost small job-cancel" type="button"></button>`;
    li.querySelector(".job-prompt").textContent = entry.job.request.prompt;
    li.querySelector(".job-cancel").addEventListener("click", () => this.cancel(entry));
    return li;
  }

  renderCard(entry) {
    const { card, state } = entry;
    const t = (k, v) => this.i18n.t(k, v);
    let text;
    if (state.status === "queued") text = state.position ? t("job.queuedAt", { n: state.position }) : (state.position === 0 ? t("job.next") : t("job.queued"));
    else if (state.status === "running") text = state.total ? t("job.step", { step: state.step, total: state.total }) : t("job.starting");
    else if (state.status === "cancelling") text = t("job.cancelling");
    else if (state.status === "succeeded") text = t("job.succeeded");
    else if (state.status === "cancelled") text = t("job.cancelled");
    else if (state.status === "failed") text = t("job.failed", { message: errorText(this.i18n, state.error) });
    card.querySelector(".job-state").textContent = text;
    card.dataset.status = state.status;
    const bar = card.querySelector(".job-progress");
    bar.max = state.total || 1;
    bar.value = state.status === "succeeded" ? bar.max : state.step || 0;
    bar.setAttribute("aria-label", text);
    const btn = card.querySelector(".job-cancel");
    const done = TERMINAL.has(state.status);
    btn.textContent = done ? t("common.dismiss") : t("job.cancel");
    btn.setAttribute("aria-label", done ? t("common.dismiss") : t("job.cancelLabel", { prompt: entry.job.request.prompt }));
    btn.disabled = state.status === "cancelling";
    btn.classList.toggle("danger-ghost", !done);
    btn.classList.toggle("ghost", done);
  }

  async watch(entry) {
    const id = entry.job.id;
    this.pollPosition(entry);
    for (;;) {
      try {
        for await (const ev of this.api.events(id, entry.abort.signal)) {
          this.onEvent(entry, ev);
          if (TERMINAL.has(ev.type)) {
            await this.finish(entry, await this.api.job(id));
            return;
          }
        }
      } catch (err) {
        if (entry.abort.signal.aborted) return;
      }
      // The stream ended without an outcome (network, server restart): look, then reconnect.
      try {
        const job = await this.api.job(id);
        if (TERMINAL.has(job.status)) return this.finish(entry, job);
      } catch { /* server away: retry below */ }
      await sleep(1000);
    }
  }

  // SSE sends the position once; while a job waits, poll so the number counts down.
  async pollPosition(entry) {
    while (entry.state.status === "queued") {
      await sleep(POSITION_POLL_MS);
      if (entry.state.status !== "queued") return;
      try {
        const job = await this.api.job(entry.job.id);
        if (job.status === "queued" && entry.state.status === "queued") {
          entry.state.position = job.queue_position;
          this.renderCard(entry);
        }
      } catch { return; }
    }
  }

  onEvent(entry, ev) {
    const d = ev.data;
    const s = entry.state;
    if (s.status === "cancelling" && !TERMINAL.has(ev.type)) {
      if (ev.type === "progress") { s.step = d.step; s.total = d.total; }
      this.renderCard(entry);
      return;
    }
    if (ev.type === "queued") { s.status = "queued"; s.position = d.queue_position; }
    else if (ev.type === "started") { s.status = "running"; }
    else if (ev.type === "progress") {
      s.status = "running";
      s.step = d.step;
      s.total = d.total;
      if (d.preview) {
        const img = entry.card.querySelector(".job-preview img");
        img.src = `data:image/png;base64,${d.preview}`;
        entry.card.classList.add("has-preview");
      }
    }
    this.renderCard(entry);
  }

  async finish(entry, job) {
    if (entry.finished) return;
    entry.finished = true;
    entry.abort.abort();
    entry.job = job;
    entry.state.status = job.status;
    entry.state.error = job.error; // {code, message, field?}: rendered in the page's language
    this.renderCard(entry);
    if (job.status === "succeeded") {
      this.announce(this.i18n.t("job.succeeded"));
      this.showImages(job);
      entry.card.remove();
      this.entries.delete(job.id);
    } else {
      this.announce(job.status === "cancelled" ? this.i18n.t("job.cancelled") : this.i18n.t("job.failed", { message: errorText(this.i18n, job.error) }));
    }
    this.onFinished(job);
  }

  async cancel(entry) {
    if (TERMINAL.has(entry.state.status)) {
      entry.card.remove();
      this.entries.delete(entry.job.id);
      return;
    }
    entry.state.status = "cancelling";
    this.renderCard(entry);
    try {
      const job = await this.api.cancel(entry.job.id);
      if (TERMINAL.has(job.status)) await this.finish(entry, job);
    } catch (err) {
      // 409: it finished first; the stream delivers the outcome.
      if (err.status !== 409) {
        entry.state.status = "running";
        this.renderCard(entry);
      }
    }
  }

  showImages(job) {
    this.stageJob = job;
    const frag = document.createDocumentFragment();
    for (const image of job.images) {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "stage-image";
      btn.setAttribute("aria-label", this.i18n.t("gallery.open", { prompt: job.request.prompt }));
      const img = document.createElement("img");
      img.alt = job.request.prompt;
      img.width = image.width;
      img.height = image.height;
      this.api.imageSrc(image.url).then((src) => { img.src = src; }).catch(() => {});
      btn.append(img);
      btn.addEventListener("click", () => this.onOpenImage(job, image));
      frag.append(btn);
    }
    this.stage.replaceChildren(frag);
    this.stage.dataset.count = String(job.images.length);
  }

  announce(text) {
    this.announcer.textContent = text;
  }
}
