"""``zaoxiang worker`` with the fake colour model, for the multi-process scale tests.

Same argument parsing, settings, backends and worker as the real command; only the runner's
loader is the fake one, so a test controls how long each step takes:
    python -m tests.scale_worker_fake --step-delay 0.05 -- worker --device cpu --data-dir D
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.service_support import fake_runner
from zaoxiang.cli import build_parser
from zaoxiang.cli.worker import settings_for, work


def main(argv: list[str]) -> int:
    ours = argparse.ArgumentParser()
    ours.add_argument("--step-delay", type=float, default=0.0)
    ours.add_argument("--steps", type=int, default=3)
    split = argv.index("--")
    opts = ours.parse_args(argv[:split])
    args = build_parser().parse_args(argv[split + 1 :])
    settings = settings_for(args)
    # One model folder for every worker of a test deployment: the same revision, so cache keys agree.
    shared = Path(settings.data_dir).parent / "fake-model"
    shared.mkdir(parents=True, exist_ok=True)
    runner = fake_runner(shared, step_delay=opts.step_delay, steps=opts.steps)
    return work(settings, runner=runner, preload=list(args.preload))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
