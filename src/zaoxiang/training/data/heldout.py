"""The fixed held-out split: combinations that split="train" never emits, so evaluation measures
generalisation (new pairings, new counts, new layouts, new sign looks), not memorisation.

Every object is an everyday COMMON_VOCAB concept the model sees often on its own and in other
combinations; only the listed combination is withheld.
"""

from __future__ import annotations

from zaoxiang.training.data.scenes import SceneSpec

# Ordered as evaluation shows them first; training withholds the pair in BOTH orders, so the
# swapped order is held out too.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("1f34e", "1f680"),  # red apple, rocket
    ("1f408", "1f6b2"),  # cat, bicycle
    ("1f415", "1f355"),  # dog, pizza
    ("1f34c", "1f697"),  # banana, automobile
    ("2600", "1f3e0"),  # sun, house
    ("1f427", "1f3b8"),  # penguin, guitar
    ("1f353", "2708"),  # strawberry, airplane
    ("1f418", "1f302"),  # elephant, closed umbrella
    ("1f438", "1f382"),  # frog, birthday cake
    ("1f337", "1f68c"),  # tulip, bus
    ("1f43c", "1f3c0"),  # panda, basketball
    ("1f34b", "26f5"),  # lemon, sailboat
    ("1f40c", "1f4fa"),  # snail, television
    ("1f405", "1f349"),  # tiger, watermelon
    ("1f308", "1f422"),  # rainbow, turtle
    ("1f335", "1f3c6"),  # cactus, trophy
)

# (concept, count) never drawn in training, in any scene kind or position.
HELDOUT_COUNTS: tuple[tuple[str, int], ...] = (
    ("1f34c", 3), ("1f415", 4), ("1f697", 2), ("1f353", 4), ("1f427", 3), ("1f388", 4),
    ("1f41f", 2), ("1f33b", 3), ("2b50", 4), ("1f36a", 3), ("1f680", 2), ("1f438", 3),
)

# (positions, sizes) of a composition, in object order, never drawn in training.
HELDOUT_LAYOUTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("top", "bottom"), ("small", "large")),
    (("right", "left"), ("large", "small")),
    (("left", "center", "right"), ("large", "small", "large")),
)

# (sign text, sign style) never drawn in training (the words themselves appear on other signs).
HELDOUT_SIGNS: tuple[tuple[str, str], ...] = (
    ("OPEN", "wood"), ("CAFE", "neon"), ("HELLO", "chalk"), ("SALE", "paper"), ("PIZZA", "chalk"),
    ("营业", "paper"), ("欢迎", "neon"), ("咖啡", "wood"), ("你好", "chalk"), ("面包", "neon"),
)

_PAIR_SET = frozenset(frozenset(p) for p in HELDOUT_PAIRS)
_COUNT_SET = frozenset(HELDOUT_COUNTS)
_LAYOUT_SET = frozenset(HELDOUT_LAYOUTS)
_SIGN_SET = frozenset(HELDOUT_SIGNS)


def heldout_reasons(spec: SceneSpec) -> list[str]:
    """Why ``spec`` belongs to the held-out split (empty list: it may appear in training)."""
    reasons = []
    ids = [o.concept_id for o in spec.objects]
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if frozenset((a, b)) in _PAIR_SET:
                reasons.append(f"pair {a}+{b}")
    reasons += [f"count {o.concept_id}x{o.count}" for o in spec.objects if (o.concept_id, o.count) in _COUNT_SET]
    if spec.kind == "composition" and (spec.positions, spec.sizes) in _LAYOUT_SET:
        reasons.append(f"layout {spec.positions}/{spec.sizes}")
    if spec.sign is not None and (spec.sign.text, spec.sign.style) in _SIGN_SET:
        reasons.append(f"sign {spec.sign.text}/{spec.sign.style}")
    return reasons


def is_heldout(spec: SceneSpec) -> bool:
    return bool(heldout_reasons(spec))
