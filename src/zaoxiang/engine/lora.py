"""LoRA adapters: a library of named files, an in-RAM cache of their tensors, per-request application.

The flow, per request (``zaoxiang.engine.runner``):

1. **resolve** (:meth:`LoraLibrary.resolve`): every ``LoraRef.name`` is looked up in the library
   (names only: no part of a request ever becomes a path), its file's content hash is written into
   the ref (``sha256``), so the result cache key covers each adapter's bytes and scale; ``turbo``
   adds the model's packaged turbo LoRA (:func:`turbo_plan`).
2. **load** (:meth:`LoraLibrary.activate`): the file's tensors, from an LRU cache (by bytes) keyed
   by content hash, so a second request with the same adapter reads nothing from disk.
3. **apply** (:func:`applied_loras`): the pipeline's :class:`LoraTarget` injects the adapters with
   their scales, the request runs, and the target removes them again. Adapters are never fused
   into the base weights (peft keeps them beside each layer), so removing them gives back the base
   model bit for bit, and the base is never reloaded.

Formats: diffusers/peft files (``transformer.x.lora_A.weight`` ...) and kohya files
(``lora_unet_x.lora_down.weight``, ``lora_te1_...``, ``x.alpha``). For diffusers pipelines both go
to diffusers' own ``load_lora_weights``, whose per-family converters turn kohya keys into peft
ones; the built-in model's files are handled in ``zaoxiang.model.lora``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol, Sequence

import torch

from zaoxiang.errors import InvalidRequest
from zaoxiang.protocol import GenerationRequest, LoraRef

log = logging.getLogger(__name__)

# The per-model turbo adapter lives beside the model's weights under this name (for the built-in
# model: ``zaoxiang/model/weights/turbo_lora.safetensors``). "turbo" is a reserved LoRA name.
TURBO_FILE = "turbo_lora.safetensors"
TURBO_NAME = "turbo"
# Used when a turbo file's metadata does not say: the target (4 steps, guidance 1 = no CFG).
TURBO_DEFAULT_STEPS = 4
TURBO_DEFAULT_GUIDANCE = 1.0
DEFAULT_CACHE_BYTES = 2 << 30

LoraFormat = Literal["peft", "kohya"]

# What a family is called in messages.
FAMILY_NAMES = {
    "builtin": "the zaoxiang built-in model",
    "flux": "FLUX.1",
    "sdxl": "SDXL",
    "sd1": "Stable Diffusion 1.x/2.x",
    "sd3": "SD3",
    "qwen-image": "Qwen-Image",
    "z-image": "Z-Image",
}


@dataclass(frozen=True)
class LoraWeights:
    """One adapter file's tensors as stored (CPU), with what was read about it."""

    sha256: str
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str]
    format: LoraFormat
    nbytes: int


@dataclass(frozen=True)
class ActiveLora:
    """One adapter as a request applies it."""

    name: str
    weights: LoraWeights
    scale: float
    field: str  # "loras.0.name": where errors about it point


@dataclass(frozen=True)
class TurboPlan:
    """What ``turbo: true`` means for one model: its turbo LoRA at ``scale`` and the step count and
    guidance it was distilled for (used where the request leaves them out)."""

    path: Path
    scale: float
    steps: int
    guidance: float


@dataclass(frozen=True)
class LoraInfo:
    """A registered adapter, as ``GET /v1/models`` lists it."""

    name: str
    source: Literal["dir", "cli"]
    size_bytes: int


class LoraTarget(Protocol):
    """How one loaded pipeline takes adapters (``LoadedPipeline.lora_target``)."""

    family: str

    def apply(self, adapters: Sequence[ActiveLora]) -> None:
        """Inject and activate ``adapters`` with their scales (raise InvalidRequest on a mismatch)."""

    def remove(self) -> None:
        """Take every adapter out again; afterwards the pipeline computes exactly what its base does."""


# -- formats ------------------------------------------------------------------------------------------


def detect_format(keys: Sequence[str]) -> LoraFormat | None:
    """``kohya`` (lora_down/lora_up/alpha), ``peft`` (lora_A/lora_B, diffusers' own naming
    included), or None when the keys are not those of a LoRA."""
    if any(k.endswith((".lora_down.weight", ".lora_up.weight")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k or ".lora.down." in k or ".lora.up." in k for k in keys):
        return "peft"
    return None


def guess_architecture(keys: Sequence[str]) -> frozenset[str]:
    """The families a LoRA's keys look made for (empty: no idea). Used to refuse a LoRA for another
    architecture with a message saying what it seems made for."""
    text = "\n".join(keys)
    if "double_blocks" in text or "single_blocks" in text or "single_transformer_blocks" in text:
        return frozenset({"flux"})
    if "lora_te1_" in text or "lora_te2_" in text or "text_encoder_2." in text:
        return frozenset({"sdxl"})
    if any(s in text for s in ("lora_unet_down_blocks", "lora_unet_input_blocks", "lora_unet_up_blocks",
                               "lora_unet_output_blocks", "lora_unet_mid_block", "unet.")):
        return frozenset({"sdxl", "sd1"})
    if "img_mlp" in text or "txt_mlp" in text or "img_mod" in text:
        return frozenset({"qwen-image"})
    if "context_refiner" in text or "noise_refiner" in text or ".attention.to_q" in text:
        return frozenset({"z-image"})
    if any(s in text for s in (".img.qkv", ".txt.qkv", ".linear1.", "lora_unet_dual_", "lora_unet_single_")):
        return frozenset({"builtin"})
    if "ff_context" in text or "add_q_proj" in text or "add_k_proj" in text:
        return frozenset({"sd3", "flux"})
    return frozenset()


def describe_families(families: frozenset[str]) -> str:
    return " or ".join(FAMILY_NAMES.get(f, f) for f in sorted(families))


def check_architecture(weights: LoraWeights, family: str, name: str, field: str) -> None:
    """Refuse a LoRA whose keys say it was made for another architecture."""
    made_for = guess_architecture(list(weights.state_dict))
    if made_for and family not in made_for:
        raise InvalidRequest(
            f"LoRA {name!r} does not fit this {FAMILY_NAMES.get(family, family)} model: it seems made for "
            f"{describe_families(made_for)}",
            field=field,
            code="lora_mismatch",
        )


def read_lora_file(path: Path, field: str = "loras") -> LoraWeights:
    """Read a safetensors LoRA (any supported format) to CPU tensors, or raise InvalidRequest."""
    from safetensors import safe_open

    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        from safetensors.torch import load as load_bytes

        state_dict = load_bytes(data)
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise InvalidRequest(
            f"LoRA file {Path(path).name} is not a readable safetensors file: {exc}", field=field, code="lora_corrupt"
        ) from None
    fmt = detect_format(list(state_dict))
    if fmt is None:
        raise InvalidRequest(
            f"LoRA file {Path(path).name} holds no LoRA tensors (no lora_A/lora_B or lora_down/lora_up keys)",
            field=field,
            code="lora_corrupt",
        )
    nbytes = sum(t.numel() * t.element_size() for t in state_dict.values())
    return LoraWeights(sha256=digest, state_dict=state_dict, metadata=metadata, format=fmt, nbytes=nbytes)


# -- turbo ---------------------------------------------------------------------------------------------


def turbo_plan(model_dir: Path, model_name: str) -> TurboPlan:
    """What ``--turbo`` / ``"turbo": true`` means: the model's packaged turbo LoRA
    (``<model folder>/turbo_lora.safetensors``) at scale 1, with the steps and guidance it was
    distilled for (metadata ``recommended_steps`` / ``recommended_guidance``; 4 and 1 otherwise).
    The request's own steps/guidance, where given, win. Refuses while no turbo file is installed."""
    path = Path(model_dir) / TURBO_FILE
    if not path.is_file():
        raise InvalidRequest(
            f"turbo: model {model_name!r} has no turbo adapter installed (expected {TURBO_FILE} beside its weights)",
            field="turbo",
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
        steps = int(meta.get("recommended_steps", TURBO_DEFAULT_STEPS))
        guidance = float(meta.get("recommended_guidance", TURBO_DEFAULT_GUIDANCE))
    except Exception as exc:
        raise InvalidRequest(f"turbo: the turbo adapter of {model_name!r} is unreadable: {exc}", field="turbo",
                             code="lora_corrupt") from None
    return TurboPlan(path=path, scale=1.0, steps=steps, guidance=guidance)


# -- the library ---------------------------------------------------------------------------------------


class LoraLibrary:
    """Registered adapters by name, their content hashes, and an LRU cache (by bytes) of their tensors.

    Names come from ``lora_dir`` (``<name>.safetensors``, rescanned when a name is not found, so
    files dropped in while serving appear) and from :meth:`register` (the CLI's ``--lora FILE``).
    "turbo" always means the requested model's turbo adapter. Thread-safe.
    """

    def __init__(self, lora_dir: Path | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.lora_dir = Path(lora_dir).expanduser() if lora_dir is not None else None
        self.cache_bytes = cache_bytes
        self._files: dict[str, tuple[Path, Literal["dir", "cli"]]] = {}
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256
        self._cache: OrderedDict[str, LoraWeights] = OrderedDict()  # sha256 -> weights, LRU order
        self._lock = threading.RLock()
        self.disk_reads = 0  # files read into the cache (misses), for tests and logs
        self.rescan()

    # -- names --------------------------------------------------------------------------------------

    def rescan(self) -> None:
        """Pick up the files now in ``lora_dir`` (ad-hoc registrations are kept)."""
        if self.lora_dir is None:
            return
        if not self.lora_dir.is_dir():
            raise InvalidRequest(f"LoRA directory {str(self.lora_dir)!r} does not exist", field="lora_dir")
        with self._lock:
            for name in [n for n, (_, src) in self._files.items() if src == "dir"]:
                del self._files[name]
            for f in sorted(self.lora_dir.glob("*.safetensors")):
                if f.stem == TURBO_NAME:
                    log.warning("ignoring %s: %r is reserved for the model's own turbo adapter", f, TURBO_NAME)
                    continue
                self._files.setdefault(f.stem, (f.resolve(), "dir"))

    def register(self, path: Path | str, name: str | None = None) -> str:
        """Register a file ad hoc (trusted callers only: the CLI). Returns its name (the file stem)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise InvalidRequest(f"LoRA file {str(path)!r} does not exist", field="lora")
        name = name or path.stem
        if name == TURBO_NAME:
            raise InvalidRequest(f"{TURBO_NAME!r} is reserved for the model's turbo adapter; rename the file", field="lora")
        with self._lock:
            known = self._files.get(name)
            if known is not None and known[0] != path.resolve():
                raise InvalidRequest(f"two LoRA files are named {name!r}: {known[0]} and {path}", field="lora")
            self._files[name] = (path.resolve(), "cli")
        return name

    def list(self) -> list[LoraInfo]:
        with self._lock:
            return [
                LoraInfo(name=n, source=src, size_bytes=p.stat().st_size if p.is_file() else 0)
                for n, (p, src) in sorted(self._files.items())
            ]

    def _path(self, name: str, model_dir: Path | None, model_name: str, field: str) -> Path:
        if name == TURBO_NAME:
            if model_dir is None:
                raise InvalidRequest("the turbo adapter needs a model", field=field)
            return turbo_plan(model_dir, model_name).path
        with self._lock:
            found = self._files.get(name)
            if found is None and self.lora_dir is not None:
                self.rescan()
                found = self._files.get(name)
            if found is None:
                known = ", ".join(sorted(self._files)) or "none"
                raise InvalidRequest(f"unknown LoRA {name!r}; known LoRAs: {known}", field=field, code="unknown_lora")
        path = found[0]
        if not path.is_file():
            raise InvalidRequest(f"LoRA {name!r} is registered but its file is gone", field=field, code="unknown_lora")
        return path

    def check_names(self, request: GenerationRequest) -> None:
        """Fail fast (API submit) on an unknown name; the content is checked when the job runs."""
        for i, ref in enumerate(request.loras):
            if ref.name != TURBO_NAME:
                self._path(ref.name, None, "", f"loras.{i}.name")

    # -- per request ------------------------------------------------------------------------------

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            digest = self._hashes.get(key)
        if digest is None:
            h = hashlib.sha256()
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            with self._lock:
                self._hashes[key] = digest
        return digest

    def resolve(
        self, request: GenerationRequest, model_dir: Path, model_name: str
    ) -> tuple[tuple[LoraRef, ...], TurboPlan | None]:
        """The request's LoRAs with content hashes filled in (and the turbo adapter appended when
        ``turbo`` is set), plus the turbo plan. Idempotent: resolving a resolved request is a no-op."""
        turbo = turbo_plan(model_dir, model_name) if request.turbo else None
        refs = list(request.loras)
        if turbo is not None and not any(r.name == TURBO_NAME for r in refs):
            refs.append(LoraRef(name=TURBO_NAME, scale=turbo.scale))
        out = []
        for i, ref in enumerate(refs):
            field = f"loras.{i}.name"
            digest = self.sha256(self._path(ref.name, model_dir, model_name, field))
            if ref.sha256 is not None and ref.sha256 != digest:
                raise InvalidRequest(
                    f"LoRA {ref.name!r} has changed since this request was made (content hash {digest[:12]}, "
                    f"request pinned {ref.sha256[:12]})",
                    field=f"loras.{i}.sha256",
                )
            out.append(ref.model_copy(update={"sha256": digest}))
        return tuple(out), turbo

    def activate(self, refs: Sequence[LoraRef], model_dir: Path, model_name: str) -> list[ActiveLora]:
        """Tensors for resolved refs, from the cache or disk."""
        active = []
        for i, ref in enumerate(refs):
            field = f"loras.{i}.name"
            path = self._path(ref.name, model_dir, model_name, field)
            active.append(ActiveLora(name=ref.name, weights=self._weights(path, ref.sha256, field), scale=ref.scale, field=field))
        return active

    def _weights(self, path: Path, expected: str | None, field: str) -> LoraWeights:
        digest = expected or self.sha256(path)
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None:
                self._cache.move_to_end(digest)
                return hit
        weights = read_lora_file(path, field)
        if expected is not None and weights.sha256 != expected:
            raise InvalidRequest(f"LoRA file {path.name} changed while the request ran", field=field)
        with self._lock:
            self.disk_reads += 1
            self._cache[weights.sha256] = weights
            while sum(w.nbytes for w in self._cache.values()) > self.cache_bytes and len(self._cache) > 1:
                self._cache.popitem(last=False)
        return weights

    def cached(self) -> list[str]:
        """Content hashes of the adapters now held in RAM, least recently used first."""
        with self._lock:
            return list(self._cache)


# -- application ---------------------------------------------------------------------------------------


@contextmanager
def applied_loras(pipe: Any, adapters: Sequence[ActiveLora]) -> Iterator[None]:
    """Run the body with ``adapters`` active on ``pipe``; the base is restored however it ends."""
    if not adapters:
        yield
        return
    target: LoraTarget | None = pipe.lora_target()
    if target is None:
        raise InvalidRequest(f"model {pipe.identity.name!r} does not take LoRA adapters", field="loras")
    for a in adapters:
        check_architecture(a.weights, target.family, a.name, a.field)
    try:
        target.apply(adapters)
        yield
    finally:
        target.remove()


class DiffusersLoraTarget:
    """Adapters on a diffusers pipeline through its own LoRA loader (peft backend).

    Each request loads its adapters under fresh names, weights them with ``set_adapters`` and
    unloads them all afterwards (``unload_lora_weights`` puts the original layers back). The
    converted tensors live in the library's cache, so a load costs an injection, not a file read.
    """

    def __init__(self, pipe: Any, family: str) -> None:
        self.pipe = pipe
        self.family = family

    def apply(self, adapters: Sequence[ActiveLora]) -> None:
        names = []
        for i, a in enumerate(adapters):
            name = f"zx{i}_{a.weights.sha256[:12]}"
            try:
                with warnings.catch_warnings():
                    # Stacking is the point here: peft warns when a second adapter joins the first.
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    # A shallow copy: diffusers' converters pop keys from the dict they are given.
                    self.pipe.load_lora_weights(dict(a.weights.state_dict), adapter_name=name)
            except (ValueError, KeyError, RuntimeError, AttributeError, IndexError) as exc:
                raise self._mismatch(a, f"its tensors do not load: {str(exc)[:300]}") from None
            loaded = {n for names_ in self.pipe.get_list_adapters().values() for n in names_}
            if name not in loaded:
                raise self._mismatch(a, "none of its keys name a layer of this model")
            names.append(name)
        self.pipe.set_adapters(names, adapter_weights=[a.scale for a in adapters])

    def _mismatch(self, a: ActiveLora, why: str) -> InvalidRequest:
        made_for = guess_architecture(list(a.weights.state_dict))
        hint = f"; it seems made for {describe_families(made_for)}" if made_for else ""
        return InvalidRequest(
            f"LoRA {a.name!r} does not fit this {FAMILY_NAMES.get(self.family, self.family)} model: {why}{hint}",
            field=a.field,
            code="lora_mismatch",
        )

    def remove(self) -> None:
        if any(self.pipe.get_list_adapters().values()):
            self.pipe.unload_lora_weights()

