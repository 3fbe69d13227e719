"""Evasion normalisation for the prompt filter.

A prompt is reduced to forms where the usual tricks disappear: full-width and other compatibility
characters (NFKC), case (casefold), accents and combining marks, zero-width and other format
characters, simple leetspeak (``s3x`` → ``sex``), and inserted spaces or punctuation
(``s.e.x``, ``色 情``). Each form keeps, per character, the index it came from in
:attr:`NormalizedText.text`, so matches from different forms can be compared by position (the
allow list uses that).

Two compact views come out, because Chinese and Latin text break into words differently:
``han`` keeps every letter, digit and Han character (Chinese terms match anywhere in it, as
Chinese has no spaces); ``latin`` keeps Latin letters and digits only, with Han characters acting
as word breaks, and records where each original word started and ended so that English and pinyin
terms only match from the start of a word (see :func:`latin_match_ok`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# One spelling per digit/symbol keeps the mapping predictable; "1" is far more often "i" than "l"
# in the evasions we see ("s1ut", "n1pple"), so it maps to "i".
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})

# The views fold "l" into "i" (both sides: prompt and terms) so that "1" written for either letter
# matches: "chi1d" and "child" both become "chiid". Only matching sees this, not the user.
MATCH_FOLD = str.maketrans({"l": "i"})

# CJK Unified Ideographs, Extension A, compatibility block, Extensions B-I. Written as chained
# comparisons: this runs per character and dominated the filter's cost as a range loop.
def is_han(ch: str) -> bool:
    if ch < "\u3400":
        return False
    return (
        "\u4e00" <= ch <= "\u9fff"
        or "\u3400" <= ch <= "\u4dbf"
        or "\uf900" <= ch <= "\ufaff"
        or "\U00020000" <= ch <= "\U0002ebef"
        or "\U00030000" <= ch <= "\U000323af"
    )


def _is_word_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LN"


@dataclass(frozen=True)
class TextView:
    """Separator-free characters with where each came from and where words start and end."""

    chars: str
    origin: tuple[int, ...]  # index into NormalizedText.text, per char
    starts: tuple[bool, ...]  # char begins a word
    ends: tuple[bool, ...]  # char ends a word

    def span(self, pos: int, length: int) -> tuple[int, int]:
        """Half-open range of NormalizedText.text covered by chars[pos:pos+length]."""
        return self.origin[pos], self.origin[pos + length - 1] + 1


@dataclass(frozen=True)
class NormalizedText:
    text: str  # casefolded, NFKC, marks and format chars removed, leet mapped, spaces collapsed
    han: TextView
    latin: TextView


def canonical(text: str) -> str:
    """The character-level normalisation alone (no view building)."""
    # NFKD first so accents come apart as combining marks we can drop; NFKC afterwards puts
    # full-width and compatibility forms into their plain shape.
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Me", "Cf"))
    folded = unicodedata.normalize("NFKC", kept).casefold().translate(LEET)
    out: list[str] = []
    prev_space = True
    for ch in folded:
        if _is_word_char(ch):
            out.append(ch)
            prev_space = False
        elif not prev_space:
            out.append(" ")
            prev_space = True
    return "".join(out).rstrip(" ")


def _view(text: str, keep_han: bool) -> TextView:
    chars: list[str] = []
    origin: list[int] = []
    starts: list[bool] = []
    ends: list[bool] = []
    at_break = True
    for i, ch in enumerate(text):
        han = is_han(ch)
        if ch == " " or (han and not keep_han):
            if ends:
                ends[-1] = True
            at_break = True
            continue
        chars.append(ch.translate(MATCH_FOLD))
        origin.append(i)
        starts.append(at_break)
        ends.append(False)
        at_break = False
    if ends:
        ends[-1] = True
    return TextView("".join(chars), tuple(origin), tuple(starts), tuple(ends))


def normalize(text: str) -> NormalizedText:
    canon = canonical(text)
    return NormalizedText(text=canon, han=_view(canon, keep_han=True), latin=_view(canon, keep_han=False))


def latin_match_ok(view: TextView, pos: int, length: int, term_breaks: frozenset[int]) -> bool:
    """Whether a Latin term found at chars[pos:pos+length] counts as a match.

    It must begin at the start of a word (so "sex" is not found in "Essex" or "this extra").
    It may end inside a word ("sexy", "pornography") only if every word break the text has inside
    the match is one the term itself has ("child pornography" for "child porn"); a match broken
    where the term is not ("s e x", "nu de") must end at the end of a word, which stops
    "younv" from matching "you nvidia".
    """
    if not view.starts[pos]:
        return False
    if view.ends[pos + length - 1]:
        return True
    return all(not view.starts[pos + k] or k in term_breaks for k in range(1, length))
