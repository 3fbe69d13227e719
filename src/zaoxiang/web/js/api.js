// The studio's only way to the server: the native jobs and edits API plus the two studio endpoints.
// Every request carries the API key when one is stored; a 401 fires "zx:auth" so the UI can ask.

const KEY_STORAGE = "zaoxiang.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, field, reason) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.reason = reason; // /readyz's not_ready: why, as a stable code
  }
}

export class Api {
  constructor(base = "") {
    this.base = base;
    this.blobUrls = new Map(); // image url -> object URL, when images need the key
  }

  get key() {
    return localStorage.getItem(KEY_STORAGE) || "";
  }

  set key(value) {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
    for (const url of this.blobUrls.values()) URL.revokeObjectURL(url);
    this.blobUrls.clear();
  }

  headers(extra = {}) {
    const h = { ...extra };
    if (this.key) h.Authorization = `Bearer ${this.key}`;
    return h;
  }

  async request(method, path, body, { signal } = {}) {
    const init = { method, headers: this.headers(), signal };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(this.base + path, init);
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (!res.ok) throw this.error(res, data);
    return data;
  }

  error(res, data) {
    if (res.status === 401) window.dispatchEvent(new CustomEvent("zx:auth"));
    const e = (data && data.error) || {};
    return new ApiError(res.status, e.code || "http_error", e.message || `HTTP ${res.status}`, e.field, e.reason);
  }

  ready() { return this.request("GET", "/readyz"); }
  models() { return this.request("GET", "/v1/models"); }
  submit(req) { return this.request("POST", "/v1/jobs", req); }
  job(id) { return this.request("GET", `/v1/jobs/${encodeURIComponent(id)}`); }
  cancel(id) { return this.request("DELETE", `/v1/jobs/${encodeURIComponent(id)}`); }
  remove(id) { return this.request("DELETE", `/v1/studio/jobs/${encodeURIComponent(id)}`); }

  list({ q = "", status = "", limit = 24, cursor = "" } = {}) {
    const p = new URLSearchParams({ limit: String(limit) });
    if (q) p.set("q", q);
    if (status) p.set("status", status);
    if (cursor) p.set("cursor", cursor);
    return this.request("GET", `/v1/studio/jobs?${p}`);
  }

  // Whether the server can edit images: its OpenAPI spec lists the native edit route, or a model
  // says so. Checked at start, so the editor lights up on servers that have the editing API.
  async canEdit(models) {
    if ((models || []).some((m) => (m.capabilities || []).some((c) => /edit|inpaint/.test(c)))) return true;
    try {
      const res = await fetch(this.base + "/openapi.json");
      if (!res.ok) return false;
      const spec = await res.json();
      return Boolean(spec.paths && spec.paths["/v1/edits"] && spec.paths["/v1/edits"].post);
    } catch {
      return false;
    }
  }

  // An edit is a job like any other (progress, cancel, history): POST /v1/edits, JSON with base64.
  submitEdit(body) { return this.request("POST", "/v1/edits", body); }

  // Server-Sent Events over fetch (EventSource cannot send an Authorization header).
  async *events(id, signal) {
    const res = await fetch(`${this.base}/v1/jobs/${encodeURIComponent(id)}/events`, {
      headers: this.headers({ Accept: "text/event-stream" }),
      signal,
    });
    if (!res.ok) throw this.error(res, await res.json().catch(() => null));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let type = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) type = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { type, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  // A URL an <img> or <a download> can use: the image URL itself on an open server, or an
  // object URL of the bytes fetched with the key.
  async imageSrc(url) {
    if (!this.key) return url;
    if (this.blobUrls.has(url)) return this.blobUrls.get(url);
    const res = await fetch(url, { headers: this.headers() });
    if (!res.ok) throw this.error(res, await res.json().catch(() => null));
    const obj = URL.createObjectURL(await res.blob());
    this.blobUrls.set(url, obj);
    return obj;
  }

  async imageBlob(url) {
    const res = await fetch(url, { headers: this.headers() });
    if (!res.ok) throw this.error(res, await res.json().catch(() => null));
    return res.blob();
  }
}
