"""SceneSpec: the structured description every sample carries, so evaluation can check it.

A spec fully determines the rendered image (jitter and procedural detail live in the spec), and
round-trips through JSON: ``SceneSpec.model_validate_json(spec.model_dump_json()) == spec``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from zaoxiang.training.data.lexicon import BACKGROUND_SCENES, COLOURS, SIGN_STYLES

Kind = Literal["single", "composition", "sign"]
Position = Literal["left", "right", "top", "bottom", "center"]
Size = Literal["small", "medium", "large"]
Arrangement = Literal["row", "column", "grid"]
Style = Literal["3d", "emoji", "flat"]

COLOUR_IDS = frozenset(c.id for c in COLOURS)
SCENE_IDS = frozenset(s.id for s in BACKGROUND_SCENES)
SIGN_STYLE_IDS = frozenset(s.id for s in SIGN_STYLES)

# Sets of positions a scene may use together; render.py maps each to a region of the canvas.
LAYOUT_SETS: tuple[frozenset[str], ...] = (
    frozenset({"center"}), frozenset({"left"}), frozenset({"right"}), frozenset({"top"}), frozenset({"bottom"}),
    frozenset({"left", "right"}), frozenset({"top", "bottom"}), frozenset({"left", "center", "right"}),
)


def arrangements_for(count: int, position: str) -> tuple[Arrangement, ...]:
    """The arrangements training draws ``count`` copies at ``position`` in. Captions never name the
    arrangement, so any of these is a right drawing of "three bananas"."""
    if count == 4:
        return ("grid",)
    if count == 3:
        return ("row", "column", "grid")
    return ("column",) if position in ("left", "right") else ("row",)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SceneObject(_Frozen):
    concept_id: str = Field(min_length=1)
    count: int = Field(1, ge=1, le=4)
    position: Position = "center"
    size: Size = "medium"
    # How copies (count > 1) are laid out in their region; "grid" is 2×2 for four, a triangle for three.
    arrangement: Arrangement = "row"
    # Offset of each copy inside its cell, as a fraction of the free space there (x, y in [-1, 1]).
    jitter: tuple[float, float] = (0.0, 0.0)

    @model_validator(mode="after")
    def _check(self) -> SceneObject:
        if not all(-1.0 <= j <= 1.0 for j in self.jitter):
            raise ValueError(f"jitter must lie in [-1, 1], got {self.jitter}")
        return self


class Background(_Frozen):
    kind: Literal["solid", "gradient", "scene"]
    colours: tuple[str, ...] = ()  # solid: (colour,), gradient: (top, bottom); COLOURS ids
    scene: str | None = None  # BACKGROUND_SCENES id when kind == "scene"
    seed: int = Field(0, ge=0, lt=2**31)  # procedural detail (stars, waves)

    @model_validator(mode="after")
    def _check(self) -> Background:
        want = {"solid": 1, "gradient": 2, "scene": 0}[self.kind]
        if len(self.colours) != want:
            raise ValueError(f"background.colours: a {self.kind} background needs {want} colours, got {len(self.colours)}")
        bad = [c for c in self.colours if c not in COLOUR_IDS]
        if bad:
            raise ValueError(f"background.colours: unknown colour {bad[0]!r}; known: {sorted(COLOUR_IDS)}")
        if (self.kind == "scene") != (self.scene is not None):
            raise ValueError("background.scene must be set exactly when kind is 'scene'")
        if self.scene is not None and self.scene not in SCENE_IDS:
            raise ValueError(f"background.scene: unknown scene {self.scene!r}; known: {sorted(SCENE_IDS)}")
        return self


class Sign(_Frozen):
    text: str = Field(min_length=1, max_length=12)
    lang: Literal["en", "zh"]
    style: str  # SIGN_STYLES id
    position: Position = "center"
    size: Size = "large"

    @model_validator(mode="after")
    def _check(self) -> Sign:
        if self.style not in SIGN_STYLE_IDS:
            raise ValueError(f"sign.style: unknown sign style {self.style!r}; known: {sorted(SIGN_STYLE_IDS)}")
        return self


class SceneSpec(_Frozen):
    kind: Kind
    objects: tuple[SceneObject, ...] = ()
    background: Background
    style: Style = "3d"
    sign: Sign | None = None

    @model_validator(mode="after")
    def _check(self) -> SceneSpec:
        if self.kind == "sign":
            if self.sign is None or self.objects:
                raise ValueError("a sign scene has a sign and no objects")
            return self
        if self.sign is not None:
            raise ValueError(f"a {self.kind} scene has no sign")
        if self.kind == "single" and (len(self.objects) != 1 or self.objects[0].count != 1):
            raise ValueError("a single scene has exactly one object with count 1")
        if not 1 <= len(self.objects) <= 3:
            raise ValueError(f"objects: a composition has 1 to 3 objects, got {len(self.objects)}")
        positions = [o.position for o in self.objects]
        if len(set(positions)) != len(positions) or frozenset(positions) not in LAYOUT_SETS:
            raise ValueError(f"objects: positions {positions} are not a supported layout")
        return self

    @property
    def positions(self) -> tuple[str, ...]:
        return tuple(o.position for o in self.objects)

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(o.size for o in self.objects)
