"""Hyper-parameters of the built-in model, as dataclasses validated on construction.

Sizes are named presets (``PRESETS``): ``tiny`` is for tests (trains on a CPU in seconds);
``base`` is what ships (transformer + autoencoder ≤ 40 MB in bf16). ``ModelConfig`` round-trips
through JSON (``to_dict`` / ``from_dict``) so a weights folder carries its own config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class AutoencoderConfig:
    """A small convolutional VAE: ``image_size`` RGB ↔ (latent_channels, size/f, size/f) latents."""

    channels: tuple[int, ...] = (32, 64, 128, 128)  # per resolution level; f = 2 ** (len - 1)
    latent_channels: int = 8
    blocks_per_level: int = 1
    image_size: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        if len(self.channels) < 2 or any(c <= 0 or c % 8 for c in self.channels):
            raise ValueError(f"channels must be ≥ 2 positive multiples of 8, got {self.channels}")
        if self.latent_channels <= 0 or self.blocks_per_level <= 0:
            raise ValueError("latent_channels and blocks_per_level must be positive")
        if self.image_size % self.downsample:
            raise ValueError(f"image_size {self.image_size} is not a multiple of the factor {self.downsample}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsample


@dataclass(frozen=True)
class TransformerConfig:
    """An MMDiT (SD3/FLUX-style) rectified-flow transformer over autoencoder latents."""

    hidden_size: int = 384
    num_heads: int = 6
    dual_blocks: int = 2  # separate weights for text and image tokens, joint attention
    single_blocks: int = 4  # one weight set over the concatenated sequence (FLUX single-stream)
    mlp_ratio: float = 4.0
    patch_size: int = 2
    in_channels: int = 8  # = autoencoder latent channels
    text_dim: int = 384  # = text encoder hidden size
    # Width of the text encoder's input word rows appended after its hidden states (E5TextEncoder
    # features "last+embed"); 0: hidden states only. Older weights have none (config.json without it).
    text_embed_dim: int = 0
    max_text_tokens: int = 64
    rope_theta: float = 10_000.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"head_dim {self.head_dim} must be a multiple of 4 for 2-D RoPE")
        if self.dual_blocks < 0 or self.single_blocks < 0 or self.dual_blocks + self.single_blocks == 0:
            raise ValueError("need at least one block")
        if self.patch_size <= 0 or self.in_channels <= 0 or self.text_dim <= 0:
            raise ValueError("patch_size, in_channels and text_dim must be positive")
        if self.text_embed_dim not in (0, self.text_dim):
            raise ValueError(f"text_embed_dim must be 0 or text_dim ({self.text_dim}), got {self.text_embed_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def text_features(self) -> str:
        """The E5TextEncoder features this transformer reads."""
        return "last+embed" if self.text_embed_dim else "last"

    @property
    def text_input_dim(self) -> int:
        """Width of the text input the forward takes: text_dim (+ text_embed_dim)."""
        return self.text_dim + self.text_embed_dim


@dataclass(frozen=True)
class SamplerConfig:
    """Default sampling settings shipped with the weights."""

    shift: float = 3.0  # time shift (SD3): > 1 spends more steps at high noise
    steps: int = 28
    guidance: float = 4.0


@dataclass(frozen=True)
class ModelConfig:
    name: str
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        if self.transformer.in_channels != self.autoencoder.latent_channels:
            raise ValueError(
                f"transformer.in_channels {self.transformer.in_channels} != "
                f"autoencoder.latent_channels {self.autoencoder.latent_channels}"
            )
        if self.autoencoder.latent_size % self.transformer.patch_size:
            raise ValueError("latent size must be a multiple of the patch size")

    @property
    def image_size(self) -> int:
        return self.autoencoder.image_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return cls(
            name=data["name"],
            autoencoder=AutoencoderConfig(**data.get("autoencoder", {})),
            transformer=TransformerConfig(**data.get("transformer", {})),
            sampler=SamplerConfig(**data.get("sampler", {})),
        )


def _tiny() -> ModelConfig:
    # 64×64 images (the smallest size a request may ask for) keep every test in CPU seconds; same
    # code paths as base (f8, patch 2 → 16 image tokens).
    return ModelConfig(
        name="tiny",
        autoencoder=AutoencoderConfig(channels=(8, 16, 16, 16), latent_channels=4, image_size=64),
        transformer=TransformerConfig(
            hidden_size=32, num_heads=2, dual_blocks=1, single_blocks=1, mlp_ratio=2.0,
            in_channels=4, text_dim=384, max_text_tokens=16,
        ),
        sampler=SamplerConfig(shift=1.0, steps=4, guidance=2.0),
    )


def _base() -> ModelConfig:
    # Sized by bench/builtin_cpu.py: ≈ 18.3M parameters (≈ 36.6 MB bf16) and 4 steps at 256² within
    # the CPU budget. 256² → f8 latents 32×32×8 → 256 image tokens at patch 2.
    # text_embed_dim: the transformer also reads e5's input word rows (from training run 4 on; runs
    # 1-3 had only the last hidden states and drew related objects alike, docs/model.md).
    return ModelConfig(name="base", transformer=TransformerConfig(text_embed_dim=384))


PRESETS = {"tiny": _tiny, "base": _base}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
