"""Bilingual block list + allow list over normalised prompts.

List files (UTF-8; ``#`` starts a comment line; blank lines ignored):

* block list: ``term<TAB>category[<TAB>flags]``. ``flags`` is a comma list; ``nopinyin`` stops the
  automatic pinyin form of a Chinese term, for terms whose pinyin spells ordinary words
  (碎尸 → "suishi", also 随时 "at any time").
* allow list: ``term`` per line (anything after a TAB is a note). An allow-listed phrase hides the
  block matches that overlap it: "sextant" hides "sex", "特色" hides the 色情 in 特色情况.

Every Chinese term is also matched as its toneless pinyin (via ``pypinyin``), written together or
apart ("seqing", "se qing"). Homophone characters are not matched: converting the prompt's own
Chinese to pinyin blocks ordinary words (有女 sounds like 幼女).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from pypinyin import Style, lazy_pinyin

from zaoxiang.safety.errors import SafetyConfigError
from zaoxiang.safety.normalize import TextView, is_han, latin_match_ok, normalize
from zaoxiang.safety.settings import PromptFilterSettings

DEFAULT_BLOCKLIST = "blocklist.txt"
DEFAULT_ALLOWLIST = "allowlist.txt"
KNOWN_FLAGS = frozenset({"nopinyin"})


class PromptDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    matched_term: str | None = None  # the term as listed ("色情"), None when allowed
    matched_form: str | None = None  # what matched: the term, or its pinyin ("seqing")
    category: str | None = None
    normalized: str = ""


@dataclass(frozen=True)
class BlockEntry:
    term: str
    category: str
    pinyin: bool = True


@dataclass(frozen=True)
class _Pattern:
    """One searchable form of a listed term."""

    listed: str
    form: str  # compact, normalised
    breaks: frozenset[int]  # word breaks inside `form` (Latin forms only)
    han: bool  # search the Han view by plain substring
    category: str


def _pattern(listed: str, form_text: str, category: str) -> _Pattern | None:
    norm = normalize(form_text)
    if any(is_han(ch) for ch in norm.han.chars):
        return _Pattern(listed, norm.han.chars, frozenset(), True, category)
    view = norm.latin
    if not view.chars:
        return None
    breaks = frozenset(k for k in range(1, len(view.chars)) if view.starts[k])
    return _Pattern(listed, view.chars, breaks, False, category)


def _patterns_for(entry: BlockEntry) -> list[_Pattern]:
    out = [p for p in [_pattern(entry.term, entry.term, entry.category)] if p is not None]
    if entry.pinyin and any(is_han(ch) for ch in entry.term):
        han_only = "".join(ch for ch in entry.term if is_han(ch))
        # Joined into one word: pinyin is typed with or without spaces, and a joined form makes
        # a spaced-out prompt ("se qing") match only when it ends at a word end.
        spelled = "".join(lazy_pinyin(han_only, style=Style.NORMAL))
        p = _pattern(entry.term, spelled, entry.category)
        if p is not None:
            out.append(p)
    return out


def _find(view: TextView, pat: _Pattern) -> Iterable[tuple[int, int]]:
    """Origin spans of every acceptable occurrence of `pat` in `view`."""
    n = len(pat.form)
    pos = view.chars.find(pat.form)
    while pos >= 0:
        if pat.han or latin_match_ok(view, pos, n, pat.breaks):
            yield view.span(pos, n)
        pos = view.chars.find(pat.form, pos + 1)


def parse_blocklist(text: str, source: str = "<string>") -> list[BlockEntry]:
    entries: list[BlockEntry] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in raw.rstrip("\r\n").split("\t")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise SafetyConfigError(f"{source}:{lineno}: expected 'term<TAB>category[<TAB>flags]', got {raw!r}")
        flags = {f.strip() for f in fields[2].split(",") if f.strip()} if len(fields) > 2 else set()
        unknown = flags - KNOWN_FLAGS
        if unknown:
            raise SafetyConfigError(f"{source}:{lineno}: unknown flag(s) {sorted(unknown)}; known: {sorted(KNOWN_FLAGS)}")
        entries.append(BlockEntry(fields[0], fields[1], pinyin="nopinyin" not in flags))
    return entries


def parse_allowlist(text: str) -> list[str]:
    terms = []
    for raw in text.splitlines():
        line = raw.split("\t", 1)[0].strip()
        if line and not line.startswith("#"):
            terms.append(line)
    return terms


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SafetyConfigError(f"cannot read safety list {path}: {exc.strerror or exc}") from exc


def _packaged(name: str) -> str:
    return resources.files("zaoxiang.safety").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class _Tables:
    block: tuple[_Pattern, ...]
    allow: tuple[_Pattern, ...]


class PromptFilter:
    """Thread-safe: checks read an immutable table; edits swap in a new one under a lock."""

    def __init__(self, block: Iterable[BlockEntry] = (), allow: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._block: dict[str, BlockEntry] = {}
        self._allow: dict[str, str] = {}
        for e in block:
            self._block[self._key(e.term)] = e
        for t in allow:
            self._allow[self._key(t)] = t
        self._tables = self._compile()

    @classmethod
    def from_settings(cls, settings: PromptFilterSettings) -> "PromptFilter":
        block: list[BlockEntry] = []
        allow: list[str] = []
        if settings.use_default_lists:
            block += parse_blocklist(_packaged(DEFAULT_BLOCKLIST), DEFAULT_BLOCKLIST)
            allow += parse_allowlist(_packaged(DEFAULT_ALLOWLIST))
        for path in settings.blocklist_paths:
            block += parse_blocklist(_read(path), str(path))
        for path in settings.allowlist_paths:
            allow += parse_allowlist(_read(path))
        return cls(block, allow)

    @staticmethod
    def _key(term: str) -> str:
        key = normalize(term).text
        if not key:
            raise SafetyConfigError(f"term {term!r} is empty after normalisation")
        return key

    def _compile(self) -> _Tables:
        block = tuple(p for e in self._block.values() for p in _patterns_for(e))
        allow = tuple(p for t in self._allow.values() for p in [_pattern(t, t, "allow")] if p is not None)
        return _Tables(block, allow)

    # -- run-time edits -------------------------------------------------------------------------

    def add_block_term(self, term: str, category: str, *, pinyin: bool = True) -> None:
        if not category.strip():
            raise SafetyConfigError("category must not be empty")
        with self._lock:
            self._block[self._key(term)] = BlockEntry(term, category.strip(), pinyin)
            self._tables = self._compile()

    def remove_block_term(self, term: str) -> bool:
        with self._lock:
            removed = self._block.pop(self._key(term), None) is not None
            self._tables = self._compile()
        return removed

    def add_allow_term(self, term: str) -> None:
        with self._lock:
            self._allow[self._key(term)] = term
            self._tables = self._compile()

    def remove_allow_term(self, term: str) -> bool:
        with self._lock:
            removed = self._allow.pop(self._key(term), None) is not None
            self._tables = self._compile()
        return removed

    def block_terms(self) -> list[BlockEntry]:
        with self._lock:
            return list(self._block.values())

    def allow_terms(self) -> list[str]:
        with self._lock:
            return list(self._allow.values())

    # -- checking -------------------------------------------------------------------------------

    def check(self, prompt: str) -> PromptDecision:
        tables = self._tables  # one consistent snapshot even if an edit lands meanwhile
        norm = normalize(prompt)
        allowed_spans = [
            span for pat in tables.allow for span in _find(norm.han if pat.han else norm.latin, pat)
        ]
        for pat in tables.block:
            for start, end in _find(norm.han if pat.han else norm.latin, pat):
                if any(start < a_end and a_start < end for a_start, a_end in allowed_spans):
                    continue
                return PromptDecision(
                    allowed=False,
                    matched_term=pat.listed,
                    matched_form=pat.form,
                    category=pat.category,
                    normalized=norm.text,
                )
        return PromptDecision(allowed=True, normalized=norm.text)
