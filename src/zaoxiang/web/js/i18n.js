// UI strings in English and Chinese. Static text is marked in the HTML with data-i18n
// (text), data-i18n-placeholder, data-i18n-aria-label and data-i18n-title; code calls t().

const LANG_STORAGE = "zaoxiang.lang";
export const LANGS = ["en", "zh"];

export function initialLanguage() {
  const saved = localStorage.getItem(LANG_STORAGE);
  if (LANGS.includes(saved)) return saved;
  const browser = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  return browser.toLowerCase().startsWith("zh") ? "zh" : "en";
}

export class I18n {
  constructor() {
    this.lang = "en";
    this.strings = {};
    this.fallback = {};
    this.cache = {}; // lang -> strings, so switching back and forth is instant
  }

  async load(lang, { remember = false } = {}) {
    const fetchStrings = async (l) => (this.cache[l] ??= await (await fetch(`i18n/${l}.json`)).json());
    if (!Object.keys(this.fallback).length) this.fallback = await fetchStrings("en");
    this.strings = lang === "en" ? this.fallback : await fetchStrings(lang);
    this.lang = lang;
    if (remember) localStorage.setItem(LANG_STORAGE, lang);
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = this.t("app.title");
    this.apply(document);
    window.dispatchEvent(new CustomEvent("zx:lang", { detail: lang }));
  }

  has(key) {
    return key in this.strings || key in this.fallback;
  }

  t(key, vars = {}) {
    const s = this.strings[key] ?? this.fallback[key] ?? key;
    return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
  }

  apply(root) {
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = this.t(el.dataset.i18n);
    for (const [attr, data] of [["placeholder", "i18nPlaceholder"], ["aria-label", "i18nAriaLabel"], ["title", "i18nTitle"]]) {
      for (const el of root.querySelectorAll(`[data-${"i18n-" + attr}]`)) el.setAttribute(attr, this.t(el.dataset[data]));
    }
  }

  date(epochS) {
    return new Intl.DateTimeFormat(this.lang === "zh" ? "zh-CN" : "en", { dateStyle: "medium", timeStyle: "short" }).format(new Date(epochS * 1000));
  }

  relative(epochS) {
    const fmt = new Intl.RelativeTimeFormat(this.lang === "zh" ? "zh-CN" : "en", { numeric: "auto" });
    const s = Math.round(epochS - Date.now() / 1000);
    const abs = Math.abs(s);
    if (abs < 60) return fmt.format(s, "second");
    if (abs < 3600) return fmt.format(Math.round(s / 60), "minute");
    if (abs < 86400) return fmt.format(Math.round(s / 3600), "hour");
    return fmt.format(Math.round(s / 86400), "day");
  }
}
