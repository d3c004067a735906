"""Text for multimodal data: a fixed character-level tokenizer and captioned image datasets.

A labelled image set becomes a text-image set by pairing each image with the caption of its class
(``Dataset.captions``, e.g. "a handwritten digit three"). Captions are tokenized at the character
level over a fixed alphabet, so the vocabulary never depends on the dataset and a prompt given at
sampling time is tokenized with no dataset at hand. A token row is ``[BOS] c_1 ... c_n [EOS] [PAD]...``,
``text_len = max n + 2`` (into :class:`unigen.DataInfo` with ``vocab_size``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import torch
from torch import Tensor

from ..errors import DataError
from .base import Dataset

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789-'/.,"
VOCAB_SIZE = len(SPECIALS) + len(ALPHABET)
_INDEX = {c: i + len(SPECIALS) for i, c in enumerate(ALPHABET)}

__all__ = ["PAD", "BOS", "EOS", "ALPHABET", "VOCAB_SIZE", "encode", "decode", "check_text", "caption_tokens",
           "with_captions", "captioned"]


def check_text(text: str) -> str:
    """The lower-cased text, or a ValueError naming the first character outside :data:`ALPHABET`."""
    low = text.lower()
    bad = [c for c in low if c not in _INDEX]
    if bad:
        raise ValueError(f"character {bad[0]!r} of {text!r} is not in the text alphabet {ALPHABET!r}")
    return low


def encode(texts: Sequence[str], text_len: int | None = None) -> Tensor:
    """Token rows ``[BOS] chars [EOS] [PAD]...``: (N, text_len) long. ``text_len`` None: the longest + 2."""
    rows = [[BOS] + [_INDEX[c] for c in check_text(t)] + [EOS] for t in texts]
    length = text_len if text_len is not None else max((len(r) for r in rows), default=2)
    too_long = [t for t, r in zip(texts, rows) if len(r) > length]
    if too_long:
        raise ValueError(f"text {too_long[0]!r} has {len(too_long[0])} characters; at most {length - 2} fit")
    out = torch.full((len(rows), length), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def decode(tokens: Tensor) -> list[str]:
    """Token rows (N, L) -> strings: the characters after BOS up to the first EOS (specials dropped)."""
    out = []
    for row in tokens.tolist():
        chars = []
        for tok in row:
            if tok == EOS:
                break
            if tok >= len(SPECIALS):
                chars.append(ALPHABET[tok - len(SPECIALS)])
        out.append("".join(chars))
    return out


def caption_tokens(data: Dataset) -> Tensor:
    """The tokens of each example's class caption, (N, text_len), for a labelled dataset with captions."""
    if data.y is None or not data.captions:
        raise DataError(f"dataset {data.info.name!r} has no labels and captions to make text from")
    table = encode(data.captions)  # (num_classes, text_len)
    return table[data.y]


def with_captions(data: Dataset, name: str) -> Dataset:
    """The same images and labels with their caption tokens; ``vocab_size``/``text_len`` set in the info."""
    text = caption_tokens(data)
    info = attrs.evolve(data.info, name=name, vocab_size=VOCAB_SIZE, text_len=text.shape[1])
    return attrs.evolve(data, info=info, text=text)


def captioned(load: Callable[..., Dataset], name: str) -> Callable[..., Dataset]:
    """A dataset loader ``load(split, data_dir)`` whose splits carry caption tokens, registered as ``name``."""

    def load_captioned(split: str = "train", data_dir: str | None = None) -> Dataset:
        return with_captions(load(split, data_dir), name)

    return load_captioned
