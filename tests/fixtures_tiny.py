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


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests: the 2 CI cores are shared with other jobs, and two
    threads on small tensors stall on oversubscription (a tiny forward ran 40x slower)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def small_eval_pack(tmp_path_factory) -> Path:
    """A small sprite pack holding the first held-out items of each category (built once per
    session from the installed assets; skips the test when they are not installed)."""
    from zaoxiang.training.data import COMMON_VOCAB, build_pack
    from zaoxiang.training.data.assets import AssetsNotFound, find_assets
    from zaoxiang.training.data.heldout import HELDOUT_COUNTS, HELDOUT_PAIRS, HELDOUT_SIGNS

    try:
        find_assets()
    except AssetsNotFound as exc:
        pytest.skip(f"assets not installed: {exc.message}")
    ids = set(COMMON_VOCAB[:6]) | set(HELDOUT_PAIRS[0]) | {HELDOUT_COUNTS[0][0]}
    path = tmp_path_factory.mktemp("small-eval-pack") / "pack.zip"
    build_pack(None, path, concept_ids=ids, sign_words=[w for w, _ in HELDOUT_SIGNS[:2]])
    return path


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
