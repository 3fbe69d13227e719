// Server errors in the page's language. The API's messages are English; its codes are stable, so
// known codes map to strings of the i18n table, with the server's message kept as {detail} where
// it carries specifics (the limit, the models known). Unknown codes show the server's message.

// `code` → i18n key; `field` errors get the field named in the page's words.
const ERROR_KEYS = {
  invalid_request: "error.invalid_request",
  unknown_lora: "error.invalid_request",
  rate_limited: "error.rate_limited",
  queue_full: "error.queue_full",
  cancelled: "error.cancelled",
  prompt_blocked: "error.prompt_blocked",
  image_blocked: "error.image_blocked",
  unknown_model: "error.unknown_model",
  no_model_installed: "error.no_model_installed",
};

// Request fields the form has a label for (the rest, like "loras.0.name", are shown as sent).
const FIELD_LABELS = {
  prompt: "form.prompt", negative_prompt: "form.negative", model: "form.model", width: "form.width",
  height: "form.height", steps: "form.steps", guidance: "form.guidance", n: "form.n", seed: "form.seed",
  turbo: "form.turbo",
};

export function fieldText(i18n, field) {
  const label = FIELD_LABELS[field];
  return label ? `${i18n.t(label)} (${field})` : field;
}

// Whether `err` ({code, message, field?}: an ApiError or a job's error) has a string of its own.
export function knownError(err) {
  return Boolean(err && ERROR_KEYS[err.code]);
}

export function errorText(i18n, err) {
  if (!err) return "";
  const key = ERROR_KEYS[err.code];
  if (!key) return err.message || err.code || "";
  // The server's validation messages start with "field: "; the page names the field itself.
  const message = err.message || "";
  const detail = err.field && message.startsWith(`${err.field}: `) ? message.slice(err.field.length + 2) : message;
  const vars = { detail, field: err.field ? fieldText(i18n, err.field) : "" };
  return i18n.t(err.field && i18n.has(`${key}.field`) ? `${key}.field` : key, vars);
}

// A whole sentence for a failed action: the mapped text, or "Something went wrong: <message>".
export function failureText(i18n, err) {
  const text = errorText(i18n, err);
  return knownError(err) || (err && err.field) ? text : i18n.t("error.generic", { message: text });
}

// The status pill's reason: /readyz answers 503 `not_ready` with a `reason` code.
export function notReadyText(i18n, err) {
  const key = `status.reason.${err.reason}`;
  if (err.code === "not_ready" && err.reason && i18n.has(key)) return i18n.t(key);
  return errorText(i18n, err);
}
