"""A1111-style prompt weighting: ``(word:1.3)``, ``(word)`` ×1.1, ``[word]`` ÷1.1, nesting, ``\\(``.

:func:`parse_weights` turns a prompt into (text, weight) chunks, as AUTOMATIC1111's
``parse_prompt_attention`` does: the text the encoder sees is the chunks joined (brackets and
weights removed, escapes resolved), and each character carries the product of its brackets'
weights. An unclosed bracket weights everything after it; ``(a:1.2)`` inside ``[...]`` multiplies.

**How weights act** (the variant documented in docs/api.md): the states of the tokens of a
weighted chunk are multiplied by its weight, and nothing else changes. A1111 then rescales the
whole tensor to restore its mean; that moves every token (padding included), so it is off by
default here (``mean_restore=True`` gives A1111's exact behaviour). A prompt without the syntax
is never touched: its embeddings are bit-identical to the unweighted path.

**Which states, per family** (diffusers 0.42.1 encode paths):

- FLUX: the T5 sequence (``prompt_embeds``); the pooled CLIP vector is left as is.
- SD3: both parts of ``prompt_embeds`` — the 77 CLIP-L/G tokens and the T5 tokens after them;
  pooled vectors as is.
- SDXL: the 77 tokens of both CLIP encoders (concatenated on features in ``prompt_embeds``).
- Qwen-Image: the LLM states of the prompt's tokens inside its chat template (the template
  prefix the pipeline drops is accounted for).
- Z-Image: the LLM states of the prompt's tokens inside its chat template.
- Built-in model: :func:`weight_token_states` (e5 states of the clean text, weighted per token).

Tokens are mapped to characters through the tokenizer's offsets on the exact string the
pipeline encodes, so the encoder sees the natural text (not A1111's chunk-by-chunk token ids).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch

from zaoxiang.errors import InvalidRequest

ROUND = 1.1
SQUARE = 1 / 1.1
MAX_WEIGHT = 10.0

_TOKEN = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""",
    re.X,
)


@dataclass(frozen=True)
class WeightedPrompt:
    chunks: tuple[tuple[str, float], ...]  # (text, weight), adjacent equal weights merged

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.chunks)

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for _, w in self.chunks)

    def char_weights(self) -> list[float]:
        return [w for t, w in self.chunks for _ in t]


def parse_weights(prompt: str) -> WeightedPrompt:
    """Parse A1111 attention syntax. Raises InvalidRequest on a weight outside [0, MAX_WEIGHT]."""
    res: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in res[start:]:
            item[1] *= factor

    for m in _TOKEN.finditer(prompt):
        text, weight = m.group(0), m.group(1)
        if text.startswith("\\"):
            res.append([text[1:] if len(text) > 1 else text, 1.0])
        elif text == "(":
            round_open.append(len(res))
        elif text == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            try:
                w = float(weight)
            except ValueError:
                res.append([text, 1.0])
                continue
            if not 0.0 <= w <= MAX_WEIGHT:
                raise InvalidRequest(f"prompt weight {w} is outside 0..{MAX_WEIGHT:g}", field="prompt")
            multiply(round_open.pop(), w)
        elif text == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif text == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            res.append([text, 1.0])
    for pos in round_open:
        multiply(pos, ROUND)
    for pos in square_open:
        multiply(pos, SQUARE)
    merged: list[list[Any]] = []
    for text, w in res:
        if merged and merged[-1][1] == w:
            merged[-1][0] += text
        else:
            merged.append([text, w])
    return WeightedPrompt(tuple((t, float(w)) for t, w in merged if t))


# -- token weights -----------------------------------------------------------------------------------


def token_weights(tokenizer: Any, full_text: str, start: int, wp: WeightedPrompt, **tok_kwargs: Any) -> torch.Tensor:
    """(L,) weight per token of ``tokenizer(full_text)``, where ``wp.text`` sits at ``start``.

    A token takes the weight of its first character; tokens outside the prompt (specials, chat
    template, padding) keep 1.
    """
    enc = tokenizer(full_text, return_offsets_mapping=True, **tok_kwargs)
    chars = wp.char_weights()
    out = []
    for a, b in enc["offset_mapping"]:
        i = a - start
        out.append(chars[i] if b > a and 0 <= i < len(chars) else 1.0)
    return torch.tensor(out, dtype=torch.float32)


def apply_weights(states: torch.Tensor, weights: torch.Tensor, mean_restore: bool = False) -> torch.Tensor:
    """states (1, L, D) or (L, D) scaled per token by weights (L,); A1111's mean restore optional."""
    w = weights.to(states.device, states.dtype)
    if states.ndim == 3:
        w = w[None, :, None]  # (1, L, 1)
    else:
        w = w[:, None]  # (L, 1)
    out = states * w
    if mean_restore:
        out = out * (states.float().mean() / out.float().mean()).to(states.dtype)
    return out


def _fit(weights: torch.Tensor, length: int) -> torch.Tensor:
    """Weights for a tensor of ``length`` tokens (truncated by the encoder, or padded with 1s)."""
    if len(weights) >= length:
        return weights[:length]
    return torch.cat([weights, torch.ones(length - len(weights))])


# -- per family -------------------------------------------------------------------------------------


def _flux(pipe: Any, embeds: dict, key: str, wp: WeightedPrompt) -> None:
    pe = embeds[key]  # (1, L, D) T5 states
    w = token_weights(pipe.tokenizer_2, wp.text, 0, wp, max_length=pe.shape[1], truncation=True)
    embeds[key] = apply_weights(pe, _fit(w, pe.shape[1]))


def _clip_part(pipe: Any, wp: WeightedPrompt) -> torch.Tensor:
    return _fit(token_weights(pipe.tokenizer, wp.text, 0, wp, max_length=pipe.tokenizer.model_max_length, truncation=True), pipe.tokenizer.model_max_length)


def _sdxl(pipe: Any, embeds: dict, key: str, wp: WeightedPrompt) -> None:
    pe = embeds[key]  # (1, 77, D1 + D2): both CLIPs see the same tokens
    embeds[key] = apply_weights(pe, _fit(_clip_part(pipe, wp), pe.shape[1]))


def _sd3(pipe: Any, embeds: dict, key: str, wp: WeightedPrompt) -> None:
    pe = embeds[key]  # (1, 77 + L_t5, D): CLIP-L/G tokens, then T5 tokens
    clip = _clip_part(pipe, wp)
    rest = pe.shape[1] - len(clip)
    t5 = torch.ones(rest)
    if rest > 0 and getattr(pipe, "tokenizer_3", None) is not None:
        t5 = _fit(token_weights(pipe.tokenizer_3, wp.text, 0, wp, max_length=rest, truncation=True), rest)
    embeds[key] = apply_weights(pe, torch.cat([clip, t5]))


def _qwen(pipe: Any, embeds: dict, key: str, wp: WeightedPrompt) -> None:
    pe = embeds[key]  # (1, L, D): template prefix of drop_idx tokens already dropped
    template = pipe.prompt_template_encode
    start = template.index("{}")
    w = token_weights(pipe.tokenizer, template.format(wp.text), start, wp)
    drop = int(pipe.prompt_template_encode_start_idx)
    embeds[key] = apply_weights(pe, _fit(w[drop:], pe.shape[1]))


def _z_image(pipe: Any, embeds: dict, key: str, wp: WeightedPrompt) -> None:
    states = embeds[key]  # list of (L_i, D), the unpadded templated prompt
    full = pipe.tokenizer.apply_chat_template(
        [{"role": "user", "content": wp.text}], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    start = full.rfind(wp.text)
    w = token_weights(pipe.tokenizer, full, start, wp)
    embeds[key] = [apply_weights(s, _fit(w, s.shape[0])) for s in states]


FAMILY_WEIGHTING: dict[str, Callable[[Any, dict, str, WeightedPrompt], None]] = {
    "flux": _flux,
    "sd3": _sd3,
    "sdxl": _sdxl,
    "qwen-image": _qwen,
    "z-image": _z_image,
}


def weighted_encode(
    family: str, pipe: Any, encode: Callable[[str, str], dict], prompt: str, negative: str
) -> dict:
    """Encode through the family's own path (``encode(prompt_text, negative_text)``) with the
    syntax stripped, then weight the states. Without syntax this is exactly ``encode(prompt, negative)``."""
    wp, wn = parse_weights(prompt), parse_weights(negative) if negative else None
    plain_p = not wp.weighted and wp.text == prompt
    plain_n = wn is None or (not wn.weighted and wn.text == negative)
    if plain_p and plain_n:
        return encode(prompt, negative)
    embeds = encode(wp.text, wn.text if wn is not None else negative)
    weigh = FAMILY_WEIGHTING.get(family)
    if weigh is None:
        raise InvalidRequest(f"prompt weighting is not supported for {family} models", field="prompt")
    if wp.weighted:
        weigh(pipe, embeds, "prompt_embeds", wp)
    if wn is not None and wn.weighted and embeds.get("negative_prompt_embeds") is not None:
        weigh(pipe, embeds, "negative_prompt_embeds", wn)
    return embeds


# -- built-in model -----------------------------------------------------------------------------------


def _e5_offsets_row(tok: Any, prefix: str, wp: WeightedPrompt) -> tuple[list[int], list[float]] | None:
    """Content ids of ``prefix + text`` exactly as the e5 tokenizer makes them, with a weight per
    token from its character offsets; None where the tokenizer's normaliser changes the text's
    length (offsets would not line up), so the caller falls back to chunk-by-chunk tokenizing.

    Reads the tokenizer's private ``_translate``/``_tok``/``_unfuse_unk``: ``E5Tokenizer`` has no
    public offsets API yet (asked for in the issue-7 report); the ids are checked against its
    public ``content_ids`` so a change there cannot go unnoticed.
    """
    full = prefix + wp.text
    norm = full.translate(tok._translate)
    if len(norm) != len(full):
        return None
    enc = tok._tok.encode(norm, add_special_tokens=False)
    chars = [1.0] * len(prefix) + wp.char_weights()
    ids: list[int] = []
    weights: list[float] = []
    for tid, (a, b) in zip(enc.ids, enc.offsets):
        n = max(1, b - a) if tid == tok.unk else 1  # e5.c emits one <unk> per character
        # A "▁word" token's span starts at the space before it: take its first non-space character.
        first = a
        while first < b - 1 and full[first].isspace():
            first += 1
        ids += [tid] * n
        weights += [chars[first] if first < len(chars) else 1.0] * n
    if ids != tok.content_ids([full])[0]:
        return None
    return ids, weights


def _e5_chunks_row(tok: Any, prefix: str, wp: WeightedPrompt) -> tuple[list[int], list[float]]:
    ids: list[int] = []
    weights: list[float] = []
    for i, (text, w) in enumerate(wp.chunks or (("", 1.0),)):
        piece = tok.content_ids([(prefix if i == 0 else "") + text])[0]
        ids += piece
        weights += [w] * len(piece)
    return ids, weights


def weight_token_states(texts: list[str], encoder: Any, max_length: int = 64, mean_restore: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The built-in model's hook: e5 states (B, L, D) and mask (B, L) with A1111 weights applied.

    Without syntax in any text this is exactly ``encoder.encode(texts, max_length)``. Otherwise
    the clean text is tokenized as one string (the same ids as without weights) and each token
    weighted by its characters; if the normaliser makes offsets unusable, chunks are tokenized
    one by one (A1111's way). Then one encoder pass, and the weights scale the states.
    """
    parsed = [parse_weights(t) for t in texts]
    if all(not p.weighted and p.text == t for p, t in zip(parsed, texts)):
        return encoder.encode(texts, max_length=max_length)
    tok = encoder.tokenizer
    rows: list[tuple[list[int], list[float]]] = []
    for p in parsed:
        ids, weights = _e5_offsets_row(tok, encoder.prefix, p) or _e5_chunks_row(tok, encoder.prefix, p)
        keep = max_length - 2
        rows.append(([tok.bos, *ids[:keep], tok.eos], [1.0, *weights[:keep], 1.0]))
    length = max(len(r[0]) for r in rows)
    device = encoder.device
    ids_t = torch.full((len(rows), length), tok.pad, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(rows), length), dtype=torch.bool)  # (B, L)
    w_t = torch.ones((len(rows), length))  # (B, L)
    for i, (row, ws) in enumerate(rows):
        ids_t[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = True
        w_t[i, : len(ws)] = torch.tensor(ws)
    with torch.no_grad():
        hidden = encoder(ids_t.to(device), mask.to(device))  # (B, L, D)
    out = torch.stack([apply_weights(h, w, mean_restore) for h, w in zip(hidden, w_t)])
    return out, mask
