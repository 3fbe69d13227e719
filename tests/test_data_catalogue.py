"""Catalogue, common vocabulary and SceneSpec validation (no sprite pack needed)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from zaoxiang.training.data import COMMON_VOCAB, SceneSpec
from zaoxiang.training.data.assets import AssetsNotFound, find_assets
from zaoxiang.training.data.captions import plural_en
from zaoxiang.training.data.concepts import classifier_for
from zaoxiang.training.data.scenes import Background, SceneObject, Sign

CJK = re.compile(r"[\u4e00-\u9fff]")


def _assets_or_skip():
    try:
        return find_assets()
    except AssetsNotFound as exc:
        pytest.skip(f"assets not installed: {exc.message}")


@pytest.fixture(scope="module")
def catalogue():
    from zaoxiang.training.data.concepts import load_catalogue

    return load_catalogue(_assets_or_skip())


def test_common_vocab_is_about_300_unique_ids():
    assert 250 <= len(COMMON_VOCAB) <= 350
    assert len(set(COMMON_VOCAB)) == len(COMMON_VOCAB)
    assert all(re.fullmatch(r"[0-9a-f]{4,5}", cid) for cid in COMMON_VOCAB)


def test_common_vocab_has_english_and_chinese_names(catalogue):
    by_id = {c.id: c for c in catalogue}
    missing = [cid for cid in COMMON_VOCAB if cid not in by_id]
    assert not missing
    for cid in COMMON_VOCAB:
        c = by_id[cid]
        assert c.name_en and c.name_en.isascii(), cid
        assert CJK.search(c.name_zh) or c.name_zh.isupper(), (cid, c.name_zh)  # "DVD" is its zh name
        assert c.keywords_en and c.keywords_zh, cid
    apple = by_id["1f34e"]
    assert (apple.name_en, apple.name_zh, apple.category) == ("red apple", "红苹果", "food")


def test_catalogue_excludes_flags_people_keycaps_and_skin_tones(catalogue):
    ids = {c.id for c in catalogue}
    assert "1f1e8-1f1f3" not in ids and "1f1e8" not in ids  # flag parts
    assert "1f468" not in ids  # man (People & Body)
    assert not any("-" in cid for cid in ids)  # no sequences: keycaps, ZWJ, skin tones
    assert "1f3fb" not in ids  # skin-tone modifier
    assert len(catalogue) > 800


@pytest.mark.slow  # rasterises every concept in every style (~20 s alone, minutes on a busy machine)
def test_common_vocab_rule_reproduces_frozen_list(catalogue):
    from zaoxiang.training.data.concepts import emoji_versions, select_common_vocab
    from zaoxiang.training.data.sprites import STYLE_RENDERERS

    paths = _assets_or_skip()
    drawable = {c.id for c in catalogue if all(r(c, paths) is not None for r in STYLE_RENDERERS.values())}
    assert select_common_vocab(catalogue, emoji_versions(paths.emoji_groups), drawable) == COMMON_VOCAB


def test_chinese_measure_words():
    assert classifier_for("猫", "animal") == "只"
    assert classifier_for("金鱼", "animal") == "条"
    assert classifier_for("自行车", "vehicle") == "辆"
    assert classifier_for("帆船", "vehicle") == "艘"
    assert classifier_for("红苹果", "food") == "个"


def test_english_plurals():
    assert plural_en("red apple") == "red apples"
    assert plural_en("face with tears of joy") == "faces with tears of joy"
    assert plural_en("mouse") == "mice"
    assert plural_en("peach") == "peaches"
    assert plural_en("cherry") == "cherries"


def _spec() -> SceneSpec:
    return SceneSpec(
        kind="composition", style="flat",
        background=Background(kind="gradient", colours=("blue", "white")),
        objects=(SceneObject(concept_id="1f34e", count=2, position="left", size="small", jitter=(0.5, -0.25)),
                 SceneObject(concept_id="1f680", position="right", size="large")),
    )


def test_scene_spec_json_round_trip():
    spec = _spec()
    again = SceneSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    sign = SceneSpec(kind="sign", background=Background(kind="scene", scene="night_sky", seed=7),
                     sign=Sign(text="营业", lang="zh", style="neon"))
    assert SceneSpec.model_validate_json(sign.model_dump_json()) == sign


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (dict(background=Background(kind="solid", colours=("red",)).model_copy(update={"colours": ("teal",)})), None),
        (dict(objects=(SceneObject(concept_id="1f34e", position="left"), SceneObject(concept_id="1f680", position="top"))), "layout"),
        (dict(kind="single"), "single"),
        (dict(kind="sign"), "sign"),
    ],
)
def test_scene_spec_rejects_bad_values(change, field):
    data = _spec().model_dump()
    data.update({k: (v.model_dump() if hasattr(v, "model_dump") else [o.model_dump() for o in v] if isinstance(v, tuple) else v)
                 for k, v in change.items()})
    with pytest.raises(ValidationError) as info:
        SceneSpec.model_validate(data)
    if field:
        assert field in str(info.value)


def test_scene_object_limits():
    with pytest.raises(ValidationError, match="count"):
        SceneObject(concept_id="1f34e", count=5)
    with pytest.raises(ValidationError, match="jitter"):
        SceneObject(concept_id="1f34e", jitter=(2.0, 0.0))
    with pytest.raises(ValidationError, match="unknown colour"):
        Background(kind="solid", colours=("teal",))
