"""Live previews are throttled to a bounded share of a run's time."""

from zaoxiang.engine.previews import PreviewThrottle


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _run(step_s: float, preview_s: float, total: int) -> list[int]:
    clock = FakeClock()
    throttle = PreviewThrottle(gap_ratio=4.0, clock=clock)
    made = []
    for i in range(1, total + 1):
        clock.t += step_s  # the denoising step
        if throttle.due(i, total):

            def decode() -> bytes:
                clock.t += preview_s
                return b"png"

            assert throttle.timed(decode) == b"png"
            made.append(i)
    return made


def test_expensive_previews_are_spaced_out_first_and_last_kept():
    # CPU-like: a preview costs as much as a step -> one preview every ~5 steps, plus the last.
    made = _run(step_s=0.16, preview_s=0.16, total=28)
    assert made[0] == 1 and made[-1] == 28
    assert 5 <= len(made) <= 8
    gaps = [b - a for a, b in zip(made, made[1:-1])]
    assert all(g >= 4 for g in gaps)


def test_cheap_previews_come_every_step():
    # GPU-like: a preview costs a small share of a step -> every step has one.
    assert _run(step_s=0.05, preview_s=0.002, total=20) == list(range(1, 21))
