"""The bilingual concept catalogue: one drawable single emoji = one concept.

Names and keywords come from CLDR (en + zh); the category comes from the Unicode emoji group
(unicode-emoji-json lists each group in the Unicode order, whose subgroups we split at fixed
boundary emoji because that package does not name subgroups).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from zaoxiang.training.data.assets import AssetPaths

VS16 = "\ufe0f"

CATEGORIES: tuple[str, ...] = (
    "animal", "plant", "food", "vehicle", "place", "nature", "object", "activity", "face", "heart", "shape",
)


@dataclass(frozen=True)
class Concept:
    id: str  # lowercase hex code point without FE0F, e.g. "1f34e"
    char: str  # the emoji as text, with FE0F where it needs one to render as emoji
    name_en: str
    name_zh: str
    keywords_en: tuple[str, ...]
    keywords_zh: tuple[str, ...]
    synonyms_en: tuple[str, ...]  # keywords unique to this concept: safe paraphrases in captions
    synonyms_zh: tuple[str, ...]
    category: str
    classifier_zh: str  # Chinese measure word: 一只猫, 一辆车, 一个苹果

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Concept:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def concept_id(char: str) -> str:
    return "-".join(f"{ord(c):x}" for c in char if c != VS16)


# Group -> list of (first emoji of a run, category of that run). The runs follow Unicode order;
# a category of None drops the run (people, hand signs, clock faces, abstract symbols...).
_RUNS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "Smileys & Emotion": (("😀", "face"), ("💌", "heart"), ("💋", None)),
    "Animals & Nature": (("🐵", "animal"), ("🐾", None), ("🦃", "animal"), ("💐", "plant")),
    "Food & Drink": (("🍇", "food"),),
    "Travel & Places": (
        ("🌍", "place"), ("🚂", "vehicle"), ("🚏", "object"), ("⚓", "object"), ("⛵", "vehicle"),
        ("💺", "object"), ("🚁", "vehicle"), ("🛎", "object"), ("🕛", None), ("🌑", "nature"),
    ),
    "Activities": (("🎃", "activity"),),
    "Objects": (("👓", "object"),),
    "Symbols": (("🏧", None), ("🔴", "shape")),
}

# Chinese measure words: the first matching name suffix wins, else the category default.
_CLASSIFIER_BY_SUFFIX: tuple[tuple[str, str], ...] = (
    ("鱼", "条"), ("蛇", "条"), ("龙", "条"), ("虫", "条"), ("马", "匹"), ("牛", "头"), ("猪", "头"),
    ("象", "头"), ("花", "朵"), ("玫瑰", "朵"), ("树", "棵"), ("仙人掌", "棵"),
    ("船", "艘"), ("艇", "艘"), ("舟", "艘"), ("飞机", "架"), ("直升机", "架"), ("火箭", "枚"),
    ("茶", "杯"), ("咖啡", "杯"), ("酒", "杯"), ("奶", "杯"), ("饮料", "杯"), ("果汁", "杯"),
    ("草莓", "颗"), ("樱桃", "颗"), ("葡萄", "串"), ("星", "颗"), ("心", "颗"), ("钻石", "颗"),
    ("衫", "件"), ("裙", "件"), ("外套", "件"), ("夹克", "件"), ("书", "本"), ("笔", "支"),
    ("房子", "座"), ("楼", "座"), ("山", "座"), ("桥", "座"), ("城堡", "座"), ("塔", "座"),
)
_CLASSIFIER_BY_CATEGORY = {
    "animal": "只", "vehicle": "辆", "place": "座", "plant": "株", "heart": "颗",
}


def classifier_for(name_zh: str, category: str) -> str:
    for suffix, word in _CLASSIFIER_BY_SUFFIX:
        if name_zh.endswith(suffix):
            return word
    return _CLASSIFIER_BY_CATEGORY.get(category, "个")


def _load_annotations(*paths: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        key = "annotationsDerived" if "annotationsDerived" in data else "annotations"
        for char, entry in data[key]["annotations"].items():
            out.setdefault(char.replace(VS16, ""), entry)
    return out


def _categorised_emoji(groups_path: Path) -> list[tuple[str, str]]:
    """(emoji, category) in Unicode order for every single-code-point emoji we keep."""
    groups = json.loads(Path(groups_path).read_text(encoding="utf-8"))
    kept: list[tuple[str, str]] = []
    for group in groups:
        runs = _RUNS.get(group["name"])
        if runs is None:  # People & Body, Flags, Component
            continue
        starts = {first.replace(VS16, ""): cat for first, cat in runs}
        category: str | None = None
        for item in group["emojis"]:
            char = item["emoji"]
            bare = char.replace(VS16, "")
            if bare in starts:
                category = starts[bare]
            # Single code point only: excludes ZWJ sequences, keycaps and skin-tone variants.
            if category is None or len(bare) != 1:
                continue
            kept.append((char, category))
    return kept


def load_catalogue(paths: AssetPaths) -> tuple[Concept, ...]:
    """All drawable single-emoji concepts with English + Chinese names, in Unicode order."""
    en = _load_annotations(paths.cldr_en, paths.cldr_derived_en)
    zh = _load_annotations(paths.cldr_zh, paths.cldr_derived_zh)
    raw: list[tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]] = []
    for char, category in _categorised_emoji(paths.emoji_groups):
        bare = char.replace(VS16, "")
        e, z = en.get(bare), zh.get(bare)
        if not e or not z or "tts" not in e or "tts" not in z:
            continue
        raw.append((char, category, e["tts"][0], z["tts"][0], tuple(e.get("default", ())), tuple(z.get("default", ()))))

    # A keyword is a safe synonym only if no other concept uses it, it is not the name itself, and it
    # keeps the name's head (last English word / last Chinese character): "shrine" for "shinto
    # shrine", "手纸" for "卷纸", but not "stroke" for "hot face".
    en_counts = Counter(k.lower() for r in raw for k in set(r[4]))
    zh_counts = Counter(k for r in raw for k in set(r[5]))
    concepts = []
    for char, category, name_en, name_zh, kw_en, kw_zh in raw:
        concepts.append(Concept(
            id=concept_id(char),
            char=char,
            name_en=name_en,
            name_zh=name_zh,
            keywords_en=kw_en,
            keywords_zh=kw_zh,
            synonyms_en=tuple(
                k for k in kw_en
                if en_counts[k.lower()] == 1 and k.lower() != name_en.lower()
                and name_en.lower().split()[-1] in k.lower().split()
            ),
            synonyms_zh=tuple(
                k for k in kw_zh if zh_counts[k] == 1 and k != name_zh and len(k) >= 2 and name_zh[-1] in k
            ),
            category=category,
            classifier_zh=classifier_for(name_zh, category),
        ))
    return tuple(concepts)


# How COMMON_VOCAB is chosen (select_common_vocab): a fixed quota per category; within a category,
# concepts that every style can draw, ranked by (emoji version: older emoji are the everyday ones,
# number of words in the English name: "cat" before "cat with wry smile", Unicode order).
COMMON_QUOTAS: tuple[tuple[str, int], ...] = (
    ("animal", 70), ("food", 70), ("object", 55), ("vehicle", 30), ("plant", 20),
    ("nature", 20), ("activity", 20), ("place", 10), ("face", 5),
)


def select_common_vocab(
    concepts: tuple[Concept, ...], emoji_versions: dict[str, float], drawable_in_all_styles: set[str]
) -> tuple[str, ...]:
    order = {c.id: i for i, c in enumerate(concepts)}
    chosen: list[str] = []
    for category, quota in COMMON_QUOTAS:
        pool = [c for c in concepts if c.category == category and c.id in drawable_in_all_styles]
        pool.sort(key=lambda c: (emoji_versions.get(c.id, 99.0), len(c.name_en.split()), order[c.id]))
        chosen.extend(c.id for c in pool[:quota])
    return tuple(sorted(chosen, key=order.__getitem__))


def emoji_versions(groups_path: Path) -> dict[str, float]:
    groups = json.loads(Path(groups_path).read_text(encoding="utf-8"))
    return {concept_id(e["emoji"]): float(e["emoji_version"]) for g in groups for e in g["emojis"]}
