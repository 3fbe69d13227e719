"""``zaoxiang serve`` with the fake colour model, for process-level tests (kill and restart).

Same argument parsing, settings and server as the real command; only the runner's loader is
the fake one, so a test controls how long each step takes:
    python -m tests.service_serve_fake --step-delay 0.2 -- serve --port 8123 --data-dir D
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.service_support import fake_runner
from zaoxiang.cli import build_parser
from zaoxiang.cli.serve import serve, settings_for


def main(argv: list[str]) -> int:
    ours = argparse.ArgumentParser()
    ours.add_argument("--step-delay", type=float, default=0.0)
    ours.add_argument("--steps", type=int, default=3)
    split = argv.index("--")
    opts = ours.parse_args(argv[:split])
    args = build_parser().parse_args(argv[split + 1 :])
    settings = settings_for(args)
    runner = fake_runner(Path(settings.data_dir), step_delay=opts.step_delay, steps=opts.steps)
    return serve(settings, runner=runner)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
