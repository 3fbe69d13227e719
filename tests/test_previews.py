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


def test_expensive_previews_are_spaced_out_from_the_first_step():
    # CPU-like: a preview costs as much as a step -> one preview every ~5 steps.
    made = _run(step_s=0.16, preview_s=0.16, total=28)
    assert made[0] == 1
    assert 5 <= len(made) <= 7
    gaps = [b - a for a, b in zip(made, made[1:])]
    assert all(g >= 4 for g in gaps)


def test_the_last_step_gets_no_forced_preview_since_the_final_image_follows():
    # CPU turbo: 4 steps of 0.1 s, a 0.17 s preview; only the first step's preview is due.
    assert _run(step_s=0.1, preview_s=0.17, total=4) == [1]


def test_cheap_previews_come_every_step():
    # GPU-like: a preview costs a small share of a step -> every step has one.
    assert _run(step_s=0.05, preview_s=0.002, total=20) == list(range(1, 21))
