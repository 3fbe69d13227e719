"""The one object the service talks to: prompt filter → (generation) → image check → watermark,
with an audit record per request.

Typical use in the service (the HTTP layer turns the errors into 400 bodies)::

    gate = SafetyGate(settings.safety)                      # once, at start-up
    decision = gate.check_prompt(req.prompt, req.negative_prompt)
    if not decision.allowed:
        gate.audit(prompt=..., decision="prompt_blocked", prompt_decision=decision, ...)
        raise PromptBlocked(...)                              # or gate.require_prompt(...)
    ...generate...
    images, decisions = gate.process_images(images, job_id)  # in a worker thread; may raise ImageBlocked

Every part loads lazily and is safe to call from several threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageFilter

from zaoxiang.safety.audit import AuditLog, AuditRecord
from zaoxiang.safety.errors import ImageBlocked, PromptBlocked
from zaoxiang.safety.image_check import ImageChecker, ImageDecision
from zaoxiang.safety.prompt_filter import PromptDecision, PromptFilter
from zaoxiang.safety.settings import SafetySettings
from zaoxiang.safety.watermark import can_mark, embed_watermark, make_payload, short_id

log = logging.getLogger(__name__)


class SafetyGate:
    def __init__(self, settings: SafetySettings | None = None) -> None:
        self.settings = settings or SafetySettings()
        self._lock = threading.Lock()
        self._filter: PromptFilter | None = None
        self._checker: ImageChecker | None = None
        self._audit: AuditLog | None = None

    # -- which parts are on ---------------------------------------------------------------------

    def _on(self, part_enabled: bool) -> bool:
        return self.settings.enabled and part_enabled

    @property
    def prompt_filter_on(self) -> bool:
        return self._on(self.settings.prompt_filter.enabled)

    @property
    def image_check_on(self) -> bool:
        return self._on(self.settings.image_check.enabled)

    @property
    def watermark_on(self) -> bool:
        return self._on(self.settings.watermark.enabled)

    @property
    def audit_on(self) -> bool:
        return self._on(self.settings.audit.enabled)

    # -- parts, built on first use ---------------------------------------------------------------

    @property
    def prompt_filter(self) -> PromptFilter:
        """The live filter; its add/remove methods edit the lists at run time."""
        if self._filter is None:
            with self._lock:
                if self._filter is None:
                    self._filter = PromptFilter.from_settings(self.settings.prompt_filter)
        return self._filter

    @property
    def image_checker(self) -> ImageChecker:
        if self._checker is None:
            with self._lock:
                if self._checker is None:
                    self._checker = ImageChecker(self.settings.image_check)
        return self._checker

    def _audit_log(self) -> AuditLog:
        if self._audit is None:
            with self._lock:
                if self._audit is None:
                    self._audit = AuditLog(self.settings.audit)
        return self._audit

    # -- prompt ---------------------------------------------------------------------------------

    def check_prompt(self, prompt: str, negative_prompt: str | None = None) -> PromptDecision:
        if not self.prompt_filter_on:
            return PromptDecision(allowed=True, normalized=prompt)
        decision = self.prompt_filter.check(prompt)
        if decision.allowed and negative_prompt and self.settings.prompt_filter.check_negative_prompt:
            decision = self.prompt_filter.check(negative_prompt)
        return decision

    def require_prompt(self, prompt: str, negative_prompt: str | None = None) -> PromptDecision:
        """check_prompt, raising PromptBlocked (400 ``prompt_blocked``) when not allowed."""
        decision = self.check_prompt(prompt, negative_prompt)
        if not decision.allowed:
            # The message names the category, not the term: echoing terms teaches evasion.
            raise PromptBlocked(f"the prompt was blocked by the content policy ({decision.category})", field="prompt")
        return decision

    # -- images ---------------------------------------------------------------------------------

    def check_images(self, images: Sequence[Image.Image]) -> list[ImageDecision]:
        if not self.image_check_on:
            return [ImageDecision(score=0.0, action="pass") for _ in images]
        return self.image_checker.check(images)

    def apply(self, images: Sequence[Image.Image], decisions: Sequence[ImageDecision]) -> list[Image.Image]:
        """Enforce decisions: raise ImageBlocked if any is "block", blur "blur" ones, pass the rest.

        "flag" images come back unchanged; the caller records the flag (metadata, audit).
        """
        if len(images) != len(decisions):
            raise ValueError(f"{len(images)} images but {len(decisions)} decisions")
        blocked = [i for i, d in enumerate(decisions) if d.action == "block"]
        if blocked:
            raise ImageBlocked(f"{len(blocked)} of {len(images)} images were blocked by the content policy")
        out = []
        for image, decision in zip(images, decisions, strict=True):
            if decision.action == "blur":
                radius = max(image.size) * self.settings.image_check.blur_radius_fraction
                image = image.filter(ImageFilter.GaussianBlur(radius))
            out.append(image)
        return out

    def watermark(self, images: Sequence[Image.Image], job_id: str = "") -> list[Image.Image]:
        """Mark every image with b"zaoxiang" + short_id(job_id). Images under 256×256 pass unmarked."""
        if not self.watermark_on:
            return list(images)
        payload = make_payload(short_id(job_id))
        out = []
        for image in images:
            if can_mark(image):
                image = embed_watermark(image, payload, scale=self.settings.watermark.scale)
            else:
                log.warning("image %dx%d is too small to watermark; returned unmarked", image.width, image.height)
            out.append(image)
        return out

    def process_images(
        self, images: Sequence[Image.Image], job_id: str = ""
    ) -> tuple[list[Image.Image], list[ImageDecision]]:
        """check → apply → watermark, for a worker thread off the GPU loop. May raise ImageBlocked."""
        decisions = self.check_images(images)
        return self.watermark(self.apply(images, decisions), job_id), decisions

    # -- audit ----------------------------------------------------------------------------------

    def audit(
        self,
        *,
        prompt: str,
        decision: str,
        key_id: str | None = None,
        request_hash: str | None = None,
        negative_prompt: str | None = None,
        prompt_decision: PromptDecision | None = None,
        image_decisions: Sequence[ImageDecision] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if not self.audit_on:
            return
        self._audit_log().write(
            AuditRecord(
                key_id=key_id,
                request_hash=request_hash,
                prompt=prompt,
                negative_prompt=negative_prompt,
                decision=decision,
                category=prompt_decision.category if prompt_decision else None,
                matched_term=prompt_decision.matched_term if prompt_decision else None,
                image_scores=[d.score for d in image_decisions] if image_decisions is not None else None,
                extra=extra,
            )
        )

    def close(self) -> None:
        if self._audit is not None:
            self._audit.close()
