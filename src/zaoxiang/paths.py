"""Where zaoxiang keeps its data by default (a function: nothing is read at import time)."""

from __future__ import annotations

from pathlib import Path


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "zaoxiang"
