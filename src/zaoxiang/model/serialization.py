"""Reading and writing a built-in weights folder.

A folder holds ``config.json`` (a ``ModelConfig``), safetensors shards ≤ ``max_shard_bytes`` named
``model-0000i-of-0000n.safetensors`` and ``model.safetensors.index.json`` (the Hugging Face
sharded layout). Keys are prefixed ``transformer.`` and ``autoencoder.``. Shipped weights are bf16;
the autoencoder's latent statistics stay fp32 (they are a few floats and normalisation needs them
exact).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import load_file, save_file

from zaoxiang.model.config import ModelConfig

CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"
SHARD_PATTERN = "model{suffix}.safetensors"
DEFAULT_MAX_SHARD_BYTES = 15 * 1024 * 1024
FP32_KEYS = ("latent_mean", "latent_std")


def default_weights_dir() -> Path:
    """The weights that ship inside the package."""
    return Path(__file__).resolve().parent / "weights"


def save_weights(
    out_dir: Path | str,
    config: ModelConfig,
    transformer: dict[str, torch.Tensor],
    autoencoder: dict[str, torch.Tensor],
    dtype: torch.dtype = torch.bfloat16,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> list[Path]:
    """Write config + sharded safetensors; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, torch.Tensor] = {}
    for prefix, sd in (("transformer", transformer), ("autoencoder", autoencoder)):
        for key, tensor in sd.items():
            keep_fp32 = key.endswith(FP32_KEYS) or not tensor.is_floating_point()
            state[f"{prefix}.{key}"] = tensor.detach().to("cpu", torch.float32 if keep_fp32 else dtype).contiguous()
    split = split_torch_state_dict_into_shards(state, filename_pattern=SHARD_PATTERN, max_shard_size=max_shard_bytes)
    for stale in list(out.glob("model*.safetensors")) + [out / INDEX_NAME]:
        stale.unlink(missing_ok=True)
    written = []
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: state[k] for k in keys}, out / filename, metadata={"format": "pt"})
        written.append(out / filename)
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
             "weight_map": split.tensor_to_filename}
    (out / INDEX_NAME).write_text(json.dumps(index, indent=1, sort_keys=True))
    (out / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2, ensure_ascii=False))
    return written + [out / INDEX_NAME, out / CONFIG_NAME]


def has_weights(folder: Path | str) -> bool:
    folder = Path(folder)
    return (folder / CONFIG_NAME).is_file() and any(folder.glob("model*.safetensors"))


def read_config(folder: Path | str) -> ModelConfig:
    """The folder's ``config.json`` alone (no tensors read)."""
    return ModelConfig.from_dict(json.loads((Path(folder) / CONFIG_NAME).read_text()))


def load_weights(folder: Path | str) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """-> (config, transformer state dict, autoencoder state dict), tensors on CPU as stored."""
    folder = Path(folder)
    config = read_config(folder)
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("model*.safetensors")):
        state.update(load_file(shard))
    parts: dict[str, dict[str, torch.Tensor]] = {"transformer": {}, "autoencoder": {}}
    for key, tensor in state.items():
        prefix, _, rest = key.partition(".")
        if prefix not in parts:
            raise ValueError(f"unexpected tensor {key!r} in {folder}")
        parts[prefix][rest] = tensor
    return config, parts["transformer"], parts["autoencoder"]


def weights_revision(folder: Path | str) -> str:
    """Content fingerprint of a weights folder (first 12 hex digits of a sha256 over its files)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted([folder / CONFIG_NAME, *folder.glob("model*.safetensors")]):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]
