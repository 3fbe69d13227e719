// Wires the studio together: language, API key, models, form, jobs, history, gallery, editor.

import { Api } from "./api.js";
import { I18n, initialLanguage } from "./i18n.js";
import { GenerateForm } from "./form.js";
import { JobTracker } from "./jobs.js";
import { History, Gallery, DetailDialog } from "./library.js";
import { MaskEditor } from "./editor.js";
import { failureText, notReadyText } from "./messages.js";

const $ = (id) => document.getElementById(id);

class Studio {
  constructor() {
    this.api = new Api();
    this.i18n = new I18n();
    this.form = new GenerateForm($("gen-form"), this.i18n);
    this.jobs = new JobTracker({
      api: this.api, i18n: this.i18n, list: $("active-jobs"), stage: $("stage-images"), announcer: $("announcer"),
      onFinished: (job) => { if (job.resolved) this.form.showSeed(job.resolved.seed); this.refreshLibrary(); },
      onOpenImage: (job, image) => this.detail.open(job, image),
    });
    this.history = new History({
      api: this.api, i18n: this.i18n, list: $("history-list"), empty: $("history-empty"), more: $("history-more"),
      onRecall: (job) => this.recall(job), onOpenImage: (job, image) => this.detail.open(job, image), onDelete: (job) => this.remove(job),
    });
    this.gallery = new Gallery({
      api: this.api, i18n: this.i18n, grid: $("gallery-grid"), empty: $("gallery-empty"), more: $("gallery-more"), search: $("gallery-search"),
      onOpenImage: (job, image) => this.detail.open(job, image),
    });
    this.detail = new DetailDialog({
      api: this.api, i18n: this.i18n, dialog: $("detail-dialog"),
      onRecall: (job) => this.recall(job), onEdit: (job, image) => this.edit(job, image), onDelete: (job) => this.remove(job),
    });
    this.editor = new MaskEditor({
      api: this.api, i18n: this.i18n, root: $("panel-edit"), getModel: () => this.form.el.model.value,
      onSubmit: (body) => this.jobs.submit(body, (b) => this.api.submitEdit(b)).then(() => this.history.load()),
    });
  }

  async start() {
    const lang = initialLanguage();
    $("lang").value = lang;
    await this.i18n.load(lang);
    $("lang").addEventListener("change", (e) => this.i18n.load(e.target.value, { remember: true }));
    this.wireKeys();
    this.wireTabs();
    this.wireKeyDialog();
    $("gen-form").addEventListener("submit", (e) => { e.preventDefault(); this.generate(); });
    window.addEventListener("zx:lang", () => this.renderStatus());
    await this.connect();
    document.body.dataset.ready = "true";
  }

  async connect() {
    try {
      // Kept as the error, not its text: the pill is rendered again when the language changes.
      const notReady = await this.api.ready().then(() => null, (err) => err);
      this.serverState = notReady ? { ok: false, error: notReady } : { ok: true };
      const models = (await this.api.models()).data;
      this.form.setModels(models);
      // A server with no model cannot generate: say how to add one instead of failing on click.
      $("no-models").hidden = models.length > 0;
      $("generate").disabled = models.length === 0;
      this.editor.setAvailable(await this.api.canEdit(models));
      await Promise.all([this.history.load(), this.gallery.load()]);
    } catch (err) {
      if (err.status === 401) return; // the key dialog is open; connect() runs again on save
      this.serverState = err.status ? { ok: false, error: err } : { offline: true };
    } finally {
      this.renderStatus();
    }
  }

  renderStatus() {
    const pill = $("server-status");
    const s = this.serverState || {};
    pill.textContent = s.offline ? this.i18n.t("status.offline") : s.ok ? this.i18n.t("status.ready")
      : s.error ? this.i18n.t("status.notReady", { why: notReadyText(this.i18n, s.error) }) : "";
    pill.dataset.state = s.ok ? "ok" : "bad";
    pill.hidden = !pill.textContent;
  }

  async generate() {
    const req = this.form.read();
    if (!req.prompt.trim()) {
      this.form.showError(this.i18n.t("form.promptRequired"));
      this.form.el.prompt.focus();
      return;
    }
    this.form.showError("");
    try {
      await this.jobs.submit(req);
      this.history.load();
    } catch (err) {
      this.form.showError(failureText(this.i18n, err));
      const field = { width: "width", height: "height", steps: "steps", guidance: "guidance", n: "n", seed: "seed", prompt: "prompt", negative_prompt: "negative", model: "model" }[err.field];
      if (field) this.form.el[field].focus();
    }
  }

  refreshLibrary() {
    this.history.load().catch(() => {});
    this.gallery.load().catch(() => {});
  }

  recall(job) {
    const req = { ...(job.resolved || job.request) };
    req.n = job.request.n; // the resolved request keeps n; keep what the user asked for
    req.turbo = job.request.turbo;
    this.form.write(req);
    this.jobs.announce(this.i18n.t("recall.done", { prompt: job.request.prompt }));
    this.form.el.prompt.focus();
  }

  async remove(job) {
    try {
      await this.api.remove(job.id);
      this.jobs.announce(this.i18n.t("delete.done"));
      this.refreshLibrary();
    } catch (err) {
      this.jobs.announce(failureText(this.i18n, err));
    }
  }

  async edit(job, image) {
    this.selectTab($("tab-edit"));
    await this.editor.load(job, image);
    $("edit-mask").focus();
  }

  wireKeys() {
    document.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.generate();
      }
    });
  }

  // WAI-ARIA tabs: arrows move between tabs, Home/End jump, the active tab is the only tab stop.
  wireTabs() {
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => this.selectTab(tab));
      tab.addEventListener("keydown", (e) => {
        const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
        if (next === undefined) return;
        e.preventDefault();
        const target = tabs[(next + tabs.length) % tabs.length];
        this.selectTab(target);
        target.focus();
      });
    });
  }

  selectTab(tab) {
    for (const t of document.querySelectorAll('[role="tab"]')) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
  }

  wireKeyDialog() {
    const dialog = $("key-dialog");
    const button = $("key-button");
    const input = $("key-input");
    button.hidden = !this.api.key;
    const open = () => {
      input.value = this.api.key;
      if (!dialog.open) dialog.showModal();
    };
    button.addEventListener("click", open);
    window.addEventListener("zx:auth", () => { button.hidden = false; open(); });
    $("key-form").addEventListener("submit", () => {
      this.api.key = input.value.trim();
      button.hidden = false;
      this.connect();
    });
    $("key-clear").addEventListener("click", () => {
      this.api.key = "";
      input.value = "";
      dialog.close();
    });
  }
}

new Studio().start();
