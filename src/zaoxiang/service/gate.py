"""Where the safety facade plugs into the service.

The service talks to a :class:`Gate`: ``check_prompt`` before a job is queued (a blocked prompt
is a 400 ``prompt_blocked``), ``check_images`` on a finished run's images before they are stored
(check → blur/block → watermark), ``audit`` once per finished job. :class:`SafetyGateAdapter`
fits ``zaoxiang.safety.gate.SafetyGate`` to it; :class:`NoGate` is the no-op default.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from zaoxiang.protocol import GenerationRequest


@runtime_checkable
class Gate(Protocol):
    def check_prompt(self, request: GenerationRequest, owner: str) -> None:
        """Raise a ZaoxiangError (code ``prompt_blocked``) to refuse the request."""

    def check_images(self, images: list[Any], request: GenerationRequest, job_id: str) -> list[Any]:
        """The images to store (possibly blurred or watermarked), or raise to refuse them."""

    def audit(self, record: dict[str, Any]) -> None:
        """Record one finished job."""


class NoGate:
    def check_prompt(self, request: GenerationRequest, owner: str) -> None:
        return None

    def check_images(self, images: list[Any], request: GenerationRequest, job_id: str) -> list[Any]:
        return list(images)

    def audit(self, record: dict[str, Any]) -> None:
        return None


class SafetyGateAdapter:
    """``zaoxiang.safety.gate.SafetyGate`` behind the service's Gate protocol."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate

    def check_prompt(self, request: GenerationRequest, owner: str) -> None:
        decision = self.gate.check_prompt(request.prompt, request.negative_prompt)
        if not decision.allowed:
            self.gate.audit(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                decision="prompt_blocked",
                key_id=owner,
                prompt_decision=decision,
            )
            self.gate.require_prompt(request.prompt, request.negative_prompt)  # raises PromptBlocked

    def check_images(self, images: list[Any], request: GenerationRequest, job_id: str) -> list[Any]:
        out, _ = self.gate.process_images(images, job_id)
        return out

    def audit(self, record: dict[str, Any]) -> None:
        self.gate.audit(
            prompt=record.get("prompt", ""),
            negative_prompt=record.get("negative_prompt"),
            decision=record.get("status", "unknown"),
            key_id=record.get("owner"),
            request_hash=record.get("request_hash"),
            extra={"job_id": record.get("job_id")},
        )


def default_gate(settings: Any) -> Gate:
    """The safety gate when the settings carry a ``safety`` group, else none."""
    safety = getattr(settings, "safety", None)
    if safety is None:
        return NoGate()
    from zaoxiang.safety.gate import SafetyGate  # imported here: onnxruntime loads lazily anyway

    return SafetyGateAdapter(SafetyGate(safety.resolved(getattr(settings, "data_dir", None))))
