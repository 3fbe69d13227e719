"""Where the safety facade plugs into the service.

``zaoxiang.safety.gate.SafetyGate`` (prompt filter, image check, watermark, audit) fits this
protocol; until one is configured the service uses :class:`NoGate`. The API calls
``check_prompt`` before a job is queued (a blocked prompt is a 400 ``prompt_blocked``); the worker
calls ``check_image`` on every image before it is stored, and ``audit`` once per finished job.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from zaoxiang.protocol import GenerationRequest


@runtime_checkable
class Gate(Protocol):
    def check_prompt(self, request: GenerationRequest) -> None:
        """Raise a ZaoxiangError (code ``prompt_blocked``) to refuse the request."""

    def check_image(self, image: Any, request: GenerationRequest) -> Any:
        """Return the image to store (possibly watermarked) or raise to refuse it."""

    def audit(self, record: dict[str, Any]) -> None:
        """Record one finished job."""


class NoGate:
    def check_prompt(self, request: GenerationRequest) -> None:
        return None

    def check_image(self, image: Any, request: GenerationRequest) -> Any:
        return image

    def audit(self, record: dict[str, Any]) -> None:
        return None
