import threading

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.test_safety_watermark import emoji_image
from zaoxiang.safety.errors import ImageBlocked
from zaoxiang.safety.gate import SafetyGate
from zaoxiang.safety.image_check import ImageChecker, decide
from zaoxiang.safety.settings import ImageCheckSettings, SafetySettings


@pytest.fixture(scope="module")
def checker():
    return ImageChecker(ImageCheckSettings())


@pytest.fixture(scope="module")
def emoji_images():
    return [
        emoji_image("🍎", (255, 255, 255), 256),
        emoji_image("🐱", (30, 90, 200), 256),
        emoji_image("⛄", (240, 200, 40), 256),
        emoji_image("🚀", (0, 0, 0), 256),
    ]


def test_builtin_style_outputs_pass(checker, emoji_images):
    decisions = checker.check(emoji_images)
    assert len(decisions) == 4
    for d in decisions:
        assert d.action == "pass" and d.score < checker.settings.flag_threshold


def test_scores_differ_by_image_and_batch_matches_single(checker, emoji_images):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    batch = checker.scores([*emoji_images, noise])
    single = [checker.scores([im])[0] for im in [*emoji_images, noise]]
    assert np.allclose(batch, single, atol=1e-4)
    assert len({round(s, 4) for s in batch}) > 1  # the model looks at the pixels
    assert checker.scores([]) == []


def test_policy_thresholds_alone():
    s = ImageCheckSettings(policy="blur", threshold=0.8, flag_threshold=0.5)
    assert [decide(x, s).action for x in (0.1, 0.5, 0.79, 0.8, 0.99)] == ["pass", "flag", "flag", "blur", "blur"]
    with pytest.raises(ValueError, match="flag_threshold"):
        ImageCheckSettings(threshold=0.3, flag_threshold=0.6)


# These trip the policy with a threshold set just under the image's real score: they test what the
# gate does with a decision, not the classifier's judgement of the image.
def _gate_tripping(policy, image, tmp_path):
    score = ImageChecker(ImageCheckSettings()).scores([image])[0]
    settings = SafetySettings.model_validate(
        {
            "image_check": {"policy": policy, "threshold": score * 0.99, "flag_threshold": score * 0.99},
            "audit": {"path": tmp_path / "audit.jsonl"},
        }
    )
    return SafetyGate(settings)


def test_policy_block(tmp_path, emoji_images):
    gate = _gate_tripping("block", emoji_images[0], tmp_path)
    decisions = gate.check_images(emoji_images[:1])
    assert decisions[0].action == "block"
    with pytest.raises(ImageBlocked) as info:
        gate.process_images(emoji_images[:1], "job")
    assert info.value.code == "image_blocked" and info.value.http_status == 400


def test_policy_blur(tmp_path, emoji_images):
    image = emoji_images[1]
    gate = _gate_tripping("blur", image, tmp_path)
    decisions = gate.check_images([image])
    assert decisions[0].action == "blur"
    out = gate.apply([image], decisions)[0]
    assert out.size == image.size
    edges = lambda im: np.asarray(im.convert("L").filter(ImageFilter.FIND_EDGES), float).mean()
    assert edges(out) < edges(image) * 0.5


def test_policy_flag_returns_image_unchanged(tmp_path, emoji_images):
    image = emoji_images[2]
    gate = _gate_tripping("flag", image, tmp_path)
    decisions = gate.check_images([image])
    assert decisions[0].action == "flag"
    assert np.array_equal(np.asarray(gate.apply([image], decisions)[0]), np.asarray(image))


def test_shared_checker_is_thread_safe(checker, emoji_images):
    expected = checker.scores(emoji_images)
    results: list[list[float]] = []
    threads = [threading.Thread(target=lambda: results.append(checker.scores(emoji_images))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(np.allclose(r, expected, atol=1e-5) for r in results)
