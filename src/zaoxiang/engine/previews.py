"""How often a run decodes a live preview.

A preview is a decode of the current latents plus a PNG encode. On a GPU that is a few ms, but on
the CPU the built-in model's decode costs about as much as a 28-step run's denoising step, so a
preview on every step doubled a service job's time (9.9 s against 4.6 s for the same request
through the CLI, measured in session 5). The throttle keeps previews to a bounded share of the run
on any device: it makes one on the first step, then whenever the time since the last preview ended
is at least ``gap_ratio`` times what that preview cost. The last step gets no forced preview: the
final image is decoded right after it, so on the CPU a forced one only delayed the result by one
more decode (a served 4-step turbo job took 1.15 s against 0.66 s through the CLI, session 7).
"""

from __future__ import annotations

import time
from typing import Callable

GAP_RATIO = 4.0  # previews take at most ~1 / (1 + GAP_RATIO) = 20 % of a run's wall time


class PreviewThrottle:
    def __init__(self, gap_ratio: float = GAP_RATIO, clock: Callable[[], float] = time.perf_counter) -> None:
        self.gap_ratio, self.clock = gap_ratio, clock
        self._last_end: float | None = None
        self._last_cost = 0.0

    def due(self, step: int, total: int) -> bool:
        if self._last_end is None:
            return True
        return self.clock() - self._last_end >= self.gap_ratio * self._last_cost

    def timed(self, make: Callable[[], bytes | None]) -> bytes | None:
        """Run ``make`` (the decode and encode) and remember its cost."""
        start = self.clock()
        out = make()
        self._last_end = self.clock()
        self._last_cost = self._last_end - start
        return out
