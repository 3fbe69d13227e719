"""Tiny random pipelines of the real architectures, built in code and offline.

Each builder makes the same diffusers pipeline class a user's model folder holds (FluxPipeline,
QwenImagePipeline, ZImagePipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline), with the
real component classes at toy sizes (2 heads of width 16, one or two blocks) and tokenizers built
from in-memory vocabularies, so nothing is downloaded. :func:`save_tiny_model` writes one as a real
diffusers folder (``model_index.json`` plus one sub-folder per component) that the registry finds
and the adapter loads exactly like real weights.

Every VAE keeps the real 8x spatial downsampling, so the size rules (multiples of 16, SD3's
``pos_embed_max_size`` limit) are those of the real models; the smallest useful image is 64x64.
The weights are random and seeded: the same family and seed always give the same folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from tokenizers import pre_tokenizers

FAMILIES: tuple[str, ...] = ("flux", "qwen-image", "z-image", "sd3", "sdxl")

# Byte-level alphabet (256 printable stand-ins for bytes): with no merges every byte is a token,
# so any text, Chinese included, tokenizes without an unknown token.
_BYTES = sorted(pre_tokenizers.ByteLevel.alphabet())
_T5_PIECES = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")


def _seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a module from a fixed seed without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


# -- tokenizers ---------------------------------------------------------------------------------


def clip_tokenizer():
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    pieces = specials + _BYTES + [b + "</w>" for b in _BYTES]
    vocab = {p: i for i, p in enumerate(pieces)}  # 514 tokens
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer():
    from transformers import T5Tokenizer

    # Unigram pieces: single characters with and without the word-start marker; other characters
    # (e.g. CJK) map to <unk>, as they do in the real T5 vocabulary.
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + c, -3.0) for c in _T5_PIECES] + [(c, -4.0) for c in _T5_PIECES]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# The Qwen3 chat template reduced to what ZImagePipeline uses (one user turn, generation prompt).
_QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer():
    from transformers import Qwen2Tokenizer

    vocab = {p: i for i, p in enumerate(_BYTES + _QWEN_SPECIALS)}  # 259 tokens
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=2048)
    tok.add_special_tokens({"additional_special_tokens": _QWEN_SPECIALS[1:]})
    tok.chat_template = _QWEN_CHAT_TEMPLATE
    return tok


QWEN_ENDOFTEXT = len(_BYTES)  # id of <|endoftext|>
QWEN_VOCAB = 320  # > every id qwen_tokenizer() emits; the vision ids below sit above them, unused


# -- text encoders --------------------------------------------------------------------------------


def _clip_config(projection_dim: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, vocab_size=520, hidden_size=32, intermediate_size=37,
        num_attention_heads=2, num_hidden_layers=2, max_position_embeddings=77, projection_dim=projection_dim,
        hidden_act="gelu", layer_norm_eps=1e-5,
    )


def _t5_encoder(d_model: int, seed: int):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        vocab_size=len(_T5_PIECES) * 2 + 8, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    return _seeded(seed, lambda: T5EncoderModel(cfg))


def _kl_vae(latent_channels: int, scaling: float, shift: float | None, seed: int, **extra):
    from diffusers import AutoencoderKL

    # Four levels = the real 8x downsampling; 8 channels keep a 64x64 decode cheap.
    return _seeded(
        seed,
        lambda: AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
            latent_channels=latent_channels, norm_num_groups=4, sample_size=64, scaling_factor=scaling,
            shift_factor=shift, **extra,
        ),
    )


# -- pipelines -------------------------------------------------------------------------------------


def build_flux(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    transformer = _seeded(
        seed,
        lambda: FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
            axes_dims_rope=(4, 4, 8),
        ),
    )
    # FLUX.1-dev's scheduler config: resolution-dependent (dynamic) shift.
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15, shift=3.0,
        use_dynamic_shifting=True,
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=_kl_vae(4, scaling=0.3611, shift=0.1159, seed=seed + 1, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=_seeded(seed + 2, lambda: CLIPTextModel(_clip_config())),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_t5_encoder(32, seed + 3),
        tokenizer_2=t5_tokenizer(),
        transformer=transformer,
    )


def build_qwen_image(seed: int = 0):
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    transformer = _seeded(
        seed,
        lambda: QwenImageTransformer2DModel(
            patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16, num_attention_heads=2,
            joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
        ),
    )
    z_dim = 4
    vae = _seeded(
        seed + 1,
        lambda: AutoencoderKLQwenImage(
            base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
            latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 2.0, 1.0, 2.5],
        ),
    )
    cfg = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": QWEN_VOCAB, "rope_theta": 1000000.0,
            "bos_token_id": QWEN_ENDOFTEXT, "eos_token_id": QWEN_ENDOFTEXT, "pad_token_id": QWEN_ENDOFTEXT,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=QWEN_VOCAB, vision_start_token_id=QWEN_VOCAB - 3,
        vision_end_token_id=QWEN_VOCAB - 2, vision_token_id=QWEN_VOCAB - 1, image_token_id=QWEN_VOCAB - 1,
        video_token_id=QWEN_VOCAB - 1,
    )
    # Qwen-Image's real scheduler config, including the shift_terminal that breaks 1-step runs.
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, base_shift=0.5, invert_sigmas=False, max_image_seq_len=8192, max_shift=0.9,
        num_train_timesteps=1000, shift=1.0, shift_terminal=0.02, stochastic_sampling=False, time_shift_type="exponential",
        use_beta_sigmas=False, use_dynamic_shifting=True, use_exponential_sigmas=False, use_karras_sigmas=False,
    )
    return QwenImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=_seeded(seed + 2, lambda: Qwen2_5_VLForConditionalGeneration(cfg)),
        tokenizer=qwen_tokenizer(),
        transformer=transformer,
    )


def build_z_image(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    def make_transformer() -> torch.nn.Module:
        t = ZImageTransformer2DModel(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=1, n_refiner_layers=1,
            n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
            axes_dims=[8, 4, 4], axes_lens=[512, 32, 32],
        )
        # The pad tokens are created with torch.empty; fix them so the folder is deterministic.
        with torch.no_grad():
            t.x_pad_token.fill_(0.5)
            t.cap_pad_token.fill_(0.5)
        return t

    cfg = Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        head_dim=8, vocab_size=QWEN_VOCAB, max_position_embeddings=1024,
        bos_token_id=QWEN_ENDOFTEXT, eos_token_id=QWEN_ENDOFTEXT, pad_token_id=QWEN_ENDOFTEXT,
    )
    # Z-Image-Turbo's scheduler config (static shift 3).
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    return ZImagePipeline(
        scheduler=scheduler,
        vae=_kl_vae(16, scaling=0.3611, shift=0.1159, seed=seed + 1),
        text_encoder=_seeded(seed + 2, lambda: Qwen3Model(cfg)),
        tokenizer=qwen_tokenizer(),
        transformer=_seeded(seed, make_transformer),
    )


def build_sd3(seed: int = 0):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    transformer = _seeded(
        seed,
        lambda: SD3Transformer2DModel(
            # pos_embed_max_size 8 (x patch 2 x VAE 8) caps images at 128 px, so the maximum-size rule
            # is testable; real SD3 checkpoints use 96 or 192.
            sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=16, num_attention_heads=2,
            joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64, out_channels=4,
            pos_embed_max_size=8,
        ),
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_kl_vae(4, scaling=1.5305, shift=0.0609, seed=seed + 1),
        text_encoder=_seeded(seed + 2, lambda: CLIPTextModelWithProjection(_clip_config())),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_seeded(seed + 3, lambda: CLIPTextModelWithProjection(_clip_config())),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=_t5_encoder(64, seed + 4),
        tokenizer_3=t5_tokenizer(),
    )


def build_sdxl(seed: int = 0):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = _seeded(
        seed,
        lambda: UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=8,
        ),
    )
    # SDXL base 1.0's scheduler config.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", prediction_type="epsilon", num_train_timesteps=1000,
    )
    return StableDiffusionXLPipeline(
        vae=_kl_vae(4, scaling=0.13025, shift=None, seed=seed + 1, force_upcast=True),
        text_encoder=_seeded(seed + 2, lambda: CLIPTextModel(_clip_config())),
        text_encoder_2=_seeded(seed + 3, lambda: CLIPTextModelWithProjection(_clip_config(projection_dim=32))),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


BUILDERS: dict[str, Callable[[int], object]] = {
    "flux": build_flux,
    "qwen-image": build_qwen_image,
    "z-image": build_z_image,
    "sd3": build_sd3,
    "sdxl": build_sdxl,
}


def build_tiny_pipeline(family: str, seed: int = 0):
    """A tiny random diffusers pipeline of ``family`` (one of :data:`FAMILIES`), fp32 on CPU."""
    try:
        builder = BUILDERS[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}") from None
    return builder(seed)


def save_tiny_model(family: str, out_dir: Path | str, seed: int = 0) -> Path:
    """Write a tiny ``family`` pipeline to ``out_dir`` as a diffusers folder; returns the folder."""
    out = Path(out_dir)
    pipe = build_tiny_pipeline(family, seed)
    pipe.save_pretrained(out, safe_serialization=True)
    # Z-Image-Turbo is told apart from base Z-Image by its model card (see families.py).
    if family == "z-image":
        (out / "README.md").write_text("# Tiny random Z-Image-Turbo (test model)\n", encoding="utf-8")
    return out
