"""English and Chinese captions for a SceneSpec, with several templates so the model sees paraphrases."""

from __future__ import annotations

import random
from typing import Literal

from zaoxiang.errors import InvalidRequest
from zaoxiang.training.data.concepts import Concept
from zaoxiang.training.data.lexicon import BACKGROUND_SCENES, COLOURS, POSITIONS, SIGN_STYLES, SIZES, STYLES
from zaoxiang.training.data.pack import SpritePack
from zaoxiang.training.data.scenes import Background, SceneObject, SceneSpec

_COLOUR = {c.id: c for c in COLOURS}
_SCENE = {s.id: s for s in BACKGROUND_SCENES}
_POS = {p.id: p for p in POSITIONS}
_SIZE = {s.id: s for s in SIZES}
_STYLE = {s.id: s for s in STYLES}
_SIGN_STYLE = {s.id: s for s in SIGN_STYLES}

SYNONYM_P = 0.15  # how often a unique CLDR keyword replaces the name
EN_NUMBERS = {2: "two", 3: "three", 4: "four"}
ZH_NUMBERS = {1: "一", 2: "两", 3: "三", 4: "四"}
_EN_IRREGULAR = {"mouse": "mice", "sheep": "sheep", "fish": "fish", "deer": "deer", "goose": "geese",
                 "person": "people", "man": "men", "woman": "women", "child": "children", "knife": "knives",
                 "leaf": "leaves", "fries": "fries", "cherries": "cherries", "grapes": "grapes", "jeans": "jeans",
                 "glasses": "glasses", "skis": "skis", "books": "books", "sparkles": "sparkles", "ox": "oxen"}


def _plural_word(word: str) -> str:
    if word in _EN_IRREGULAR:
        return _EN_IRREGULAR[word]
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def plural_en(name: str) -> str:
    """'red apple' -> 'red apples', 'face with tears of joy' -> 'faces with tears of joy'."""
    words = name.split()
    head = len(words) - 1
    for i, w in enumerate(words):  # the head noun is the last word before a preposition
        if w in ("with", "of", "in", "on", "behind", "and") and i > 0:
            head = i - 1
            break
    words[head] = _plural_word(words[head])
    return " ".join(words)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _name(concept: Concept, lang: str, rng: random.Random) -> str:
    synonyms = concept.synonyms_en if lang == "en" else concept.synonyms_zh
    if synonyms and rng.random() < SYNONYM_P:
        return rng.choice(synonyms)
    return concept.name_en if lang == "en" else concept.name_zh


def _object_phrase(obj: SceneObject, concept: Concept, lang: str, rng: random.Random, with_size: bool) -> str:
    name = _name(concept, lang, rng)
    size = _SIZE[obj.size]
    if lang == "en":
        adj = f"{size.en} " if with_size and obj.size != "medium" else ""
        if obj.count == 1:
            return f"{_article(adj or name)} {adj}{name}"
        return f"{EN_NUMBERS[obj.count]} {adj}{plural_en(name)}"
    adj = f"{size.zh}" if with_size and obj.size != "medium" else ""
    return f"{ZH_NUMBERS[obj.count]}{concept.classifier_zh}{adj}{name}"


def _background_phrase(bg: Background, lang: str) -> str:
    if bg.kind == "solid":
        c = _COLOUR[bg.colours[0]]
        return f"{c.en} background" if lang == "en" else f"{c.zh}背景"
    if bg.kind == "gradient":
        top, bottom = (_COLOUR[c] for c in bg.colours)
        return (f"{top.en} to {bottom.en} gradient background" if lang == "en"
                else f"从{top.zh}到{bottom.zh}的渐变背景")
    scene = _SCENE[bg.scene]
    return f"{scene.en} in the background" if lang == "en" else f"背景是{scene.zh}"


def _objects_en(spec: SceneSpec, pack: SpritePack, rng: random.Random) -> str:
    with_size = len(spec.objects) > 1 or rng.random() < 0.5
    parts = []
    for obj in spec.objects:
        phrase = _object_phrase(obj, pack.concept_by_id[obj.concept_id], "en", rng, with_size)
        if spec.kind == "composition" and (obj.position != "center" or len(spec.objects) > 1):
            phrase += f" {_POS[obj.position].en}"
        parts.append(phrase)
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _objects_zh(spec: SceneSpec, pack: SpritePack, rng: random.Random) -> str:
    with_size = len(spec.objects) > 1 or rng.random() < 0.5
    parts = []
    for obj in spec.objects:
        phrase = _object_phrase(obj, pack.concept_by_id[obj.concept_id], "zh", rng, with_size)
        if spec.kind == "composition" and (obj.position != "center" or len(spec.objects) > 1):
            phrase = f"{_POS[obj.position].zh}{rng.choice(('', '是', '有'))}{phrase}"
        parts.append(phrase)
    return "，".join(parts)


def caption(spec: SceneSpec, lang: Literal["en", "zh"], rng: random.Random, pack: SpritePack) -> str:
    """One caption of ``spec`` in ``lang``; ``rng`` picks the template and synonyms."""
    if lang not in ("en", "zh"):
        raise InvalidRequest(f"lang must be 'en' or 'zh', got {lang!r}", field="lang")
    bg = _background_phrase(spec.background, lang)
    if spec.kind == "sign":
        sign = spec.sign
        kind = _SIGN_STYLE[sign.style]
        if lang == "en":
            templates = (f'{_article(kind.en)} {kind.en} that says "{sign.text}", {bg}',
                         f'{_article(kind.en)} {kind.en} with the text "{sign.text}", {bg}',
                         f'"{sign.text}" written on {_article(kind.en)} {kind.en}, {bg}')
        else:
            templates = (f'{kind.zh}写着"{sign.text}"，{bg}', f'一块写着"{sign.text}"的{kind.zh}，{bg}',
                         f'{kind.zh}上写着“{sign.text}”，{bg}')
        return rng.choice(templates)

    style = _STYLE[spec.style]
    if lang == "en":
        objs = _objects_en(spec, pack, rng)
        templates = (f"{objs}, {bg}", f"{objs}, {bg}, {style.en}", f"{style.en}: {objs}, {bg}",
                     f"{objs} on a {bg}" if spec.background.kind != "scene" else f"{objs}, {bg}",
                     f"a picture of {objs}, {bg}, {style.en}")
    else:
        objs = _objects_zh(spec, pack, rng)
        templates = (f"{objs}，{bg}", f"{objs}，{bg}，{style.zh}", f"{style.zh}：{objs}，{bg}",
                     f"{bg}上，{objs}" if spec.background.kind != "scene" else f"{objs}，{bg}",
                     f"一张{style.zh}的图：{objs}，{bg}")
    return rng.choice(templates)
