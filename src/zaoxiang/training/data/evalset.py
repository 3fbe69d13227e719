"""The fixed held-out evaluation set: the same EvalItems, in the same order, on every machine."""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import zip_longest

from zaoxiang.errors import InvalidRequest
from zaoxiang.training.data.captions import caption
from zaoxiang.training.data.heldout import HELDOUT_COUNTS, HELDOUT_LAYOUTS, HELDOUT_PAIRS, HELDOUT_SIGNS
from zaoxiang.training.data.lexicon import COLOURS, STYLES
from zaoxiang.training.data.pack import SignKey, SpritePack
from zaoxiang.training.data.scenes import Background, SceneObject, SceneSpec, Sign

EVAL_CATEGORIES = ("identity", "position", "count", "background", "sign")


@dataclass(frozen=True)
class EvalItem:
    category: str  # one of EVAL_CATEGORIES
    spec: SceneSpec
    caption_en: str
    caption_zh: str


def _white() -> Background:
    return Background(kind="solid", colours=("white",))


def _candidates(pack: SpritePack) -> dict[str, list[SceneSpec]]:
    styles = [s.id for s in STYLES]
    vocab = [cid for cid in (pack.common_vocab or tuple(c.id for c in pack.concepts))]

    def has(cid: str, style: str) -> bool:
        return (cid, style) in pack.sprite_index

    out: dict[str, list[SceneSpec]] = {k: [] for k in EVAL_CATEGORIES}
    # identity: each common object once, large and centred on white, styles in rotation.
    for i, cid in enumerate(vocab):
        style = styles[i % len(styles)]
        if has(cid, style):
            out["identity"].append(SceneSpec(kind="single", style=style, background=_white(),
                                             objects=(SceneObject(concept_id=cid, size="large"),)))
    # position: held-out pairs, both orders, side by side and stacked.
    for i, (a, b) in enumerate(HELDOUT_PAIRS):
        for j, (first, second) in enumerate(((a, b), (b, a))):
            style = styles[(i + j) % len(styles)]
            positions = ("left", "right") if (i + j) % 2 == 0 else ("top", "bottom")
            if has(first, style) and has(second, style):
                objs = tuple(SceneObject(concept_id=c, position=p, size="medium") for c, p in zip((first, second), positions))
                out["position"].append(SceneSpec(kind="composition", style=style, background=_white(), objects=objs))
    for i, (positions, sizes) in enumerate(HELDOUT_LAYOUTS):
        ids = [vocab[(7 * i + 13 * k) % len(vocab)] for k in range(len(positions))] if vocab else []
        style = styles[i % len(styles)]
        if len(set(ids)) == len(ids) and ids and all(has(c, style) for c in ids):
            objs = tuple(SceneObject(concept_id=c, position=p, size=s) for c, p, s in zip(ids, positions, sizes))
            out["position"].append(SceneSpec(kind="composition", style=style, background=_white(), objects=objs))
    # count: the held-out (object, count) combos, plus count 1 of the same objects.
    for i, (cid, count) in enumerate(HELDOUT_COUNTS):
        style = styles[i % len(styles)]
        for n in (count, 1):
            if has(cid, style):
                arrangement = "grid" if n == 4 else "row"
                out["count"].append(SceneSpec(kind="composition", style=style, background=_white(),
                                              objects=(SceneObject(concept_id=cid, count=n, arrangement=arrangement),)))
    # background colour: one object per palette colour.
    for i, colour in enumerate(COLOURS):
        if not vocab:
            break
        cid, style = vocab[(31 * i) % len(vocab)], styles[i % len(styles)]
        if has(cid, style):
            out["background"].append(SceneSpec(kind="single", style=style,
                                               background=Background(kind="solid", colours=(colour.id,)),
                                               objects=(SceneObject(concept_id=cid, size="medium"),)))
    # sign text: held-out (word, sign style) combos.
    for text, sign_style in HELDOUT_SIGNS:
        lang = "en" if text.isascii() else "zh"
        if SignKey(text, lang, sign_style) in pack.sign_index:
            out["sign"].append(SceneSpec(kind="sign", background=Background(kind="solid", colours=("light_blue",)),
                                         sign=Sign(text=text, lang=lang, style=sign_style)))
    return out


def heldout_eval_set(pack: SpritePack, n: int) -> list[EvalItem]:
    """``n`` items interleaving the categories (identity, position, count, background, sign) so any
    prefix is balanced; deterministic for a given pack. Fewer than ``n`` if the pack runs out."""
    if n < 1:
        raise InvalidRequest(f"n must be >= 1, got {n}", field="n")
    cands = _candidates(pack)
    order = [item for row in zip_longest(*(cands[k] for k in EVAL_CATEGORIES)) for item in row]
    category_of = {id(s): k for k, specs in cands.items() for s in specs}
    items = []
    for i, spec in enumerate(s for s in order if s is not None):
        if len(items) == n:
            break
        rng_en, rng_zh = random.Random(f"eval-en-{i}"), random.Random(f"eval-zh-{i}")
        items.append(EvalItem(category=category_of[id(spec)], spec=spec,
                              caption_en=caption(spec, "en", rng_en, pack), caption_zh=caption(spec, "zh", rng_zh, pack)))
    return items
