"""Session fixtures: tiny random diffusers folders of each real architecture, built once per session.

``tiny_model_dir("flux")`` writes the folder on first use (a few seconds) and returns the same path
afterwards; ``tiny_runner("flux")`` is a Runner with that folder registered and its pipeline warm.
Tests that change a runner's settings or hook its modules must undo that (``monkeypatch``, ``try/finally``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from zaoxiang.engine.registry import ModelRegistry
from zaoxiang.engine.runner import Runner
from zaoxiang.settings import EngineSettings


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Callable[[str], Path]:
    from zaoxiang.testing.tiny_models import save_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = save_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_runner(tiny_model_dir) -> Callable[[str], Runner]:
    runners: dict[str, Runner] = {}

    def get(family: str) -> Runner:
        if family not in runners:
            registry = ModelRegistry.discover([f"{family}={tiny_model_dir(family)}"], include_builtin=False)
            runners[family] = Runner(registry, EngineSettings(device="cpu"))
        return runners[family]

    return get
