"""Find models: the built-in model plus any diffusers-format folder (by its model_index.json).

A registry is built once from settings and passed down; nothing is scanned at import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Literal

from zaoxiang.errors import InvalidRequest, ModelNotFound, NoModelInstalled

log = logging.getLogger(__name__)

BUILTIN_NAME = "builtin"

# diffusers pipeline class (model_index.json "_class_name") -> our family name.
SUPPORTED_PIPELINES = MappingProxyType(
    {
        "FluxPipeline": "flux",
        "QwenImagePipeline": "qwen-image",
        "ZImagePipeline": "z-image",
        "StableDiffusion3Pipeline": "sd3",
        "StableDiffusionXLPipeline": "sdxl",
    }
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: Literal["builtin", "diffusers"]
    family: str
    path: Path
    pipeline_class: str
    # The one square size the model draws (built-in weights: their config's image size), read once
    # at discovery; None: any size the pipeline accepts.
    native_size: int | None = None


def _builtin(path: Path, name: str) -> ModelEntry:
    """A built-in weights folder's entry; its config.json must parse."""
    from zaoxiang.model.serialization import read_config

    try:
        size = read_config(path).image_size
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"{str(path / 'config.json')!r} is not a built-in model config: {exc}", field="model") from None
    return ModelEntry(name=name, kind="builtin", family="builtin", path=path, pipeline_class="ZaoxiangPipeline",
                      native_size=size)


@dataclass(frozen=True)
class SkippedFolder:
    path: Path
    reason: str


def inspect_folder(path: Path, name: str | None = None) -> ModelEntry:
    """Describe a diffusers folder or a built-in-model weights folder (``zaoxiang train --export``:
    config.json + model*.safetensors), or raise InvalidRequest saying why it is neither."""
    from zaoxiang.model.serialization import has_weights

    path = Path(path).expanduser()
    index = path / "model_index.json"
    if not path.is_dir():
        raise InvalidRequest(f"model path {str(path)!r} is not a directory", field="model")
    if not index.is_file() and has_weights(path):
        return _builtin(path.resolve(), name or path.resolve().name)
    if not index.is_file():
        raise InvalidRequest(
            f"{str(path)!r} has no model_index.json: neither a diffusers-format model folder nor built-in "
            "weights (config.json + model*.safetensors)", field="model",
        )
    try:
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise InvalidRequest(f"{index} is not valid JSON: {exc}", field="model") from None
    family = SUPPORTED_PIPELINES.get(cls)
    if family is None:
        supported = ", ".join(SUPPORTED_PIPELINES)
        raise InvalidRequest(f"{str(path)!r} holds a {cls or 'unnamed'} pipeline; supported: {supported}", field="model")
    return ModelEntry(name=name or path.resolve().name, kind="diffusers", family=family, path=path.resolve(), pipeline_class=cls)


def folder_revision(path: Path) -> str:
    """A content fingerprint of a model folder: config text plus each weight file's size.

    Reading gigabytes of weights to hash them would make startup slow; configs are hashed in full
    and weight files by name, size and their safetensors header (which changes with the tensors'
    shapes and dtypes), which catches every re-export we have seen in practice.
    """
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        h.update(rel.encode())
        if f.suffix in {".json", ".txt", ".model"} and f.stat().st_size < 8 << 20:
            h.update(f.read_bytes())
        else:
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".safetensors":
                with f.open("rb") as fh:
                    h.update(fh.read(min(f.stat().st_size, 1 << 20)))
    return h.hexdigest()[:16]


def builtin_weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "model" / "weights"


def builtin_entry(weights_dir: Path | None = None) -> ModelEntry | None:
    """The built-in model, if its weights are installed."""
    weights_dir = weights_dir or builtin_weights_dir()
    if not (weights_dir / "config.json").is_file() or not any(weights_dir.glob("*.safetensors")):
        return None
    return _builtin(weights_dir, BUILTIN_NAME)


class ModelRegistry:
    """The models this process can run, by name."""

    def __init__(self, entries: Iterable[ModelEntry], default: str | None = None, skipped: Iterable[SkippedFolder] = ()):
        self._entries: dict[str, ModelEntry] = {}
        for e in entries:
            if e.name in self._entries:
                raise InvalidRequest(f"two models are named {e.name!r}: {self._entries[e.name].path} and {e.path}", field="model")
            self._entries[e.name] = e
        if default is not None and default not in self._entries:
            raise ModelNotFound(f"default model {default!r} is not registered", field="model")
        self._default = default or (BUILTIN_NAME if BUILTIN_NAME in self._entries else next(iter(self._entries), None))
        self.skipped = tuple(skipped)
        self._revisions: dict[str, str] = {}

    @classmethod
    def discover(
        cls,
        model_args: Iterable[str] = (),
        models_dir: Path | None = None,
        default: str | None = None,
        include_builtin: bool = True,
        builtin_dir: Path | None = None,
    ) -> "ModelRegistry":
        """``model_args`` are ``NAME=PATH`` or ``PATH``; ``models_dir`` holds one model per folder."""
        entries: list[ModelEntry] = []
        skipped: list[SkippedFolder] = []
        if include_builtin and (b := builtin_entry(builtin_dir)) is not None:
            entries.append(b)
        for arg in model_args:
            name, _, path = arg.rpartition("=") if "=" in arg else ("", "", arg)
            entries.append(inspect_folder(Path(path), name or None))
        if models_dir is not None:
            models_dir = Path(models_dir).expanduser()
            if not models_dir.is_dir():
                raise InvalidRequest(f"models directory {str(models_dir)!r} does not exist", field="models_dir")
            for sub in sorted(p for p in models_dir.iterdir() if p.is_dir()):
                try:
                    entries.append(inspect_folder(sub))
                except InvalidRequest as exc:
                    skipped.append(SkippedFolder(sub, exc.message))
                    log.info("skipping %s: %s", sub, exc.message)
        return cls(entries, default=default, skipped=skipped)

    @property
    def default(self) -> str | None:
        return self._default

    def list(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def get(self, name: str | None) -> ModelEntry:
        if name is None:
            if self._default is None:
                raise NoModelInstalled(
                    "no model is installed: the built-in model's weights are not in this install. "
                    "Point zaoxiang at a diffusers-format folder with --model PATH (or ZAOXIANG_MODELS), "
                    "e.g. zaoxiang generate --model ~/models/FLUX.1-dev \"a red apple\"",
                    field="model",
                )
            name = self._default
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ModelNotFound(f"unknown model {name!r}; known models: {known}", field="model")
        return entry

    def revision(self, entry: ModelEntry) -> str:
        if entry.name not in self._revisions:
            self._revisions[entry.name] = folder_revision(entry.path)
        return self._revisions[entry.name]
