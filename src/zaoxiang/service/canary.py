"""Canary routing: a model alias sends a configured share of its traffic to another model
(typically a new revision of the same model: "10% first").

``hash`` mode (the default) picks by a hash of the request, so the same request always lands
on the same model: retries, repeated seeded requests and their cache entries stay with one
revision, and a user comparing two runs is not silently switched. ``random`` mode draws per
request, for a split that is exact in expectation even when many requests are identical.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Iterable

from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest


class CanaryRouter:
    def __init__(self, routes: dict[str, list[tuple[str, float]]], mode: str = "hash", rng: random.Random | None = None) -> None:
        self.routes: dict[str, list[tuple[str, float]]] = {}
        for alias, targets in routes.items():
            if not targets:
                raise InvalidRequest(f"canary alias {alias!r} has no target models", field="service.canary")
            if any(w < 0 for _, w in targets) or sum(w for _, w in targets) <= 0:
                raise InvalidRequest(
                    f"canary alias {alias!r}: weights must be >= 0 and not all 0", field="service.canary"
                )
            self.routes[alias] = [(m, float(w)) for m, w in targets]
        if mode not in ("hash", "random"):
            raise InvalidRequest(f"canary mode must be hash or random (got {mode!r})", field="service.canary_mode")
        self.mode = mode
        self._rng = rng or random.Random()

    def check(self, known: Iterable[str]) -> None:
        """Every target must be a registered model (checked when a server starts)."""
        names = set(known)
        for alias, targets in self.routes.items():
            for model, _ in targets:
                if model not in names:
                    raise InvalidRequest(
                        f"canary alias {alias!r} routes to {model!r}, which is not a registered model",
                        field="service.canary",
                    )

    def _draw(self, request: GenerationRequest) -> float:
        if self.mode == "random":
            return self._rng.random()
        canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def route(self, request: GenerationRequest, default_model: str | None = None) -> tuple[GenerationRequest, str | None]:
        """The request with its model replaced by the chosen target, and the alias it came
        through (None when the model is not an alias)."""
        alias = request.model or default_model
        targets = self.routes.get(alias or "")
        if not targets:
            return request, None
        u = self._draw(request) * sum(w for _, w in targets)
        acc = 0.0
        chosen = targets[-1][0]
        for model, w in targets:
            acc += w
            if u < acc:
                chosen = model
                break
        return request.model_copy(update={"model": chosen}), alias
