"""LoRA for the built-in MMDiT: a file format, save/load, and per-request stacking through peft.

File format (safetensors):

- tensors ``transformer.<module path>.lora_A.weight`` (r, in) and ``...lora_B.weight`` (out, r)
  for any ``nn.Linear`` of the MMDiT, e.g. ``transformer.dual.0.img.qkv.lora_A.weight``;
- metadata (all strings): ``format = "zaoxiang-lora"``, ``version = "1"``, ``base = "zaoxiang-mmdit"``,
  ``rank``, ``alpha`` (the update is ``scale * alpha / rank * B @ A``), and optionally
  ``recommended_steps`` / ``recommended_guidance`` (the turbo adapter sets these, see
  ``zaoxiang.engine.lora.turbo_plan``).

Also read: peft files without the ``transformer.`` prefix (or with ``base_model.model.``) and kohya
files (``lora_unet_dual_0_img_qkv.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``): diffusers'
kohya converters are per architecture and know nothing of ours, so the kohya names are mapped back
to module paths here, by matching against the model's own Linear layers.

Application uses peft's functional API: ``inject_adapter_in_model`` per adapter (its own name,
rank and alpha), the adapter tensors copied in, ``set_scale`` per request, ``set_adapter`` with the
list of all of them (peft sums active adapters), and diffusers' ``recurse_remove_peft_layers`` to
put the original Linear modules back afterwards: the base weights are never touched, so the
model is bit-identical once the adapters are gone.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from zaoxiang.engine.lora import ActiveLora, LoraWeights
from zaoxiang.errors import InvalidRequest

FORMAT = "zaoxiang-lora"
BASE = "zaoxiang-mmdit"
PREFIX = "transformer."


@dataclass(frozen=True)
class ModuleLora:
    """One layer's low-rank update: A (r, in), B (out, r), and its alpha."""

    down: torch.Tensor  # (r, in)
    up: torch.Tensor  # (out, r)
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])


def save_lora(
    path: Path | str,
    layers: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    rank: int,
    alpha: float,
    extra_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``{module path: (A (r, in), B (out, r))}`` as a zaoxiang LoRA file."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for module, (down, up) in layers.items():
        if down.shape[0] != rank or up.shape[1] != rank:
            raise ValueError(f"{module}: A {tuple(down.shape)} / B {tuple(up.shape)} do not have rank {rank}")
        tensors[f"{PREFIX}{module}.lora_A.weight"] = down.detach().contiguous().cpu()
        tensors[f"{PREFIX}{module}.lora_B.weight"] = up.detach().contiguous().cpu()
    meta = {"format": FORMAT, "version": "1", "base": BASE, "rank": str(rank), "alpha": repr(float(alpha))}
    meta.update(extra_metadata or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_lora(path: Path | str) -> LoraWeights:
    """Read a LoRA file (any format the engine takes) to CPU tensors."""
    from zaoxiang.engine.lora import read_lora_file

    return read_lora_file(Path(path))


def random_lora(model: nn.Module, rank: int = 4, std: float = 0.05, seed: int = 0,
                targets: Sequence[str] | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A random LoRA on ``targets`` (default: every Linear of the model), for tests and smoke runs."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear) and (targets is None or path in targets):
            down = torch.randn(rank, module.in_features, generator=gen) * std  # (r, in)
            up = torch.randn(module.out_features, rank, generator=gen) * std  # (out, r)
            out[path] = (down, up)
    return out


def module_loras(weights: LoraWeights, model: nn.Module, name: str = "lora", field: str = "loras") -> dict[str, ModuleLora]:
    """``{module path: ModuleLora}`` from a file in any supported naming, checked against ``model``."""
    linears = {p: m for p, m in model.named_modules() if isinstance(m, nn.Linear)}
    sd = weights.state_dict
    meta = weights.metadata
    default_alpha = float(meta["alpha"]) if "alpha" in meta else None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    if weights.format == "kohya":
        by_kohya = {"lora_unet_" + p.replace(".", "_"): p for p in linears}
        for key, tensor in sd.items():
            stem, _, kind = key.partition(".")
            path = by_kohya.get(stem)
            if path is None:
                raise _mismatch(name, field, f"no layer of the built-in model is called {stem!r}")
            slot = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}.get(kind)
            if slot is None:
                raise _mismatch(name, field, f"unexpected key {key!r}")
            pairs.setdefault(path, {})[slot] = tensor
    else:
        pattern = re.compile(r"^(?:transformer\.|base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")
        for key, tensor in sd.items():
            m = pattern.match(key)
            if m is None:
                raise _mismatch(name, field, f"unexpected key {key!r}")
            path, ab = m.groups()
            if path not in linears:
                raise _mismatch(name, field, f"no Linear layer {path!r} in the built-in model")
            pairs.setdefault(path, {})["down" if ab == "A" else "up"] = tensor
    out = {}
    for path, parts in pairs.items():
        if "down" not in parts or "up" not in parts:
            raise _mismatch(name, field, f"layer {path!r} has only one of its two LoRA matrices")
        down, up = parts["down"], parts["up"]
        layer = linears[path]
        if down.ndim != 2 or up.ndim != 2 or down.shape[1] != layer.in_features or up.shape[0] != layer.out_features \
                or up.shape[1] != down.shape[0]:
            raise _mismatch(
                name, field,
                f"layer {path!r} is {layer.in_features}->{layer.out_features} but the LoRA has A {tuple(down.shape)}, "
                f"B {tuple(up.shape)} (made for another size of the model?)",
            )
        alpha = float(parts["alpha"].item()) if "alpha" in parts else default_alpha
        out[path] = ModuleLora(down=down, up=up, alpha=float(down.shape[0]) if alpha is None else alpha)
    return out


def _mismatch(name: str, field: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"LoRA {name!r} does not fit the built-in model: {why}", field=field, code="lora_mismatch")


class BuiltinLoraTarget:
    """Stacks adapters on the built-in MMDiT for one request and takes them out again."""

    family = "builtin"

    def __init__(self, transformer: nn.Module) -> None:
        self.transformer = transformer

    def apply(self, adapters: Sequence[ActiveLora]) -> None:
        from peft import LoraConfig
        from peft.functional import inject_adapter_in_model, set_adapter

        model = self.transformer
        weight = next(model.parameters())
        # Every adapter is matched against the plain model before any is injected: a mismatch then
        # leaves nothing behind, and module paths are those of the base (not peft's wrappers).
        plans = [module_loras(a.weights, model, a.name, a.field) for a in adapters]
        names = []
        for i, (a, layers) in enumerate(zip(adapters, plans)):
            name = f"zx{i}"
            ranks = {p: m.rank for p, m in layers.items()}
            alphas = {p: m.alpha for p, m in layers.items()}
            r0, a0 = next(iter(ranks.values())), next(iter(alphas.values()))
            config = LoraConfig(
                r=r0, lora_alpha=a0, target_modules=sorted(layers), lora_dropout=0.0,
                # Exact module names: peft reads pattern keys as regular expressions.
                rank_pattern={re.escape(p): r for p, r in ranks.items() if r != r0},
                alpha_pattern={re.escape(p): v for p, v in alphas.items() if v != a0},
            )
            with warnings.catch_warnings():
                # Stacking is the point here: peft warns when a second adapter joins the first.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_adapter_in_model(config, model, adapter_name=name)
            with torch.no_grad():
                for path, m in layers.items():
                    layer = model.get_submodule(path)
                    # peft may upcast adapters to fp32; they run in the model's dtype (BF16 policy).
                    layer.lora_A[name].to(weight.device, weight.dtype)
                    layer.lora_B[name].to(weight.device, weight.dtype)
                    layer.lora_A[name].weight.copy_(m.down.to(weight.device, weight.dtype))
                    layer.lora_B[name].weight.copy_(m.up.to(weight.device, weight.dtype))
                    layer.set_scale(name, a.scale)
            names.append(name)
        set_adapter(model, names, inference_mode=True)

    def remove(self) -> None:
        from diffusers.utils.peft_utils import recurse_remove_peft_layers

        recurse_remove_peft_layers(self.transformer)
        if hasattr(self.transformer, "peft_config"):
            del self.transformer.peft_config

