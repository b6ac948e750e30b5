"""Sentence <-> token ids for the text tower and the decoder.

Two sources, one interface (`TextTokenizer`):
- from scratch: a BPE tokenizer learned on the training sentences with `tokenizers`;
- pretrained: the tokenizer of a local mBART folder, with its vocabulary trimmed to the ids the
  training corpus uses (GFSLT-VLP and C²RL trim mBART-cc25's 250k vocabulary the same way), so
  the embedding matrices stay small. `kept_ids[new_id] = pretrained_id`.

Ids the model sees are always the (possibly trimmed) ids; special tokens come first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from slsearch.errors import SlsearchError

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # mBART's order: bos=0, pad=1, eos=2, unk=3
TRIM_FILE = "vocab_trim.json"


def _wrap(tok) -> "PreTrainedTokenizerFast":  # noqa: F821
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>",
                                   eos_token="</s>", unk_token="<unk>")


def train_bpe(sentences: Iterable[str], vocab_size: int = 4000):
    """Learn a lower-casing BPE (sentencepiece-style word boundaries) on `sentences`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=1,
                                  show_progress=False)
    tok.train_from_iterator(list(sentences), trainer=trainer)
    return _wrap(tok)


class TextTokenizer:
    """Batches of sentences -> (ids (B, L) long, mask (B, L) bool), each ending in </s>; and back."""

    def __init__(self, hf_tokenizer, kept_ids: Sequence[int] | None = None, max_length: int = 64):
        self.hf = hf_tokenizer
        self.max_length = max_length
        self.kept_ids = list(kept_ids) if kept_ids is not None else None
        if self.kept_ids is not None:
            self._to_new = {old: new for new, old in enumerate(self.kept_ids)}
        self.pad_id = self._map_one(self.hf.pad_token_id)
        self.bos_id = self._map_one(self.hf.bos_token_id)
        self.eos_id = self._map_one(self.hf.eos_token_id)
        self.unk_id = self._map_one(self.hf.unk_token_id)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_corpus(cls, sentences: Sequence[str], vocab_size: int = 4000, max_length: int = 64) -> "TextTokenizer":
        return cls(train_bpe(sentences, vocab_size), max_length=max_length)

    @classmethod
    def from_pretrained_trimmed(cls, folder: str | Path, sentences: Sequence[str],
                                max_length: int = 64) -> "TextTokenizer":
        """The tokenizer of a local pretrained model, keeping only ids the sentences use."""
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:  # transformers raises many types here
            raise SlsearchError(f"{folder}: cannot load a tokenizer ({type(e).__name__}: {e})") from e
        used: set[int] = set()
        for ids in hf(list(sentences), add_special_tokens=False)["input_ids"]:
            used.update(ids)
        specials = [hf.bos_token_id, hf.pad_token_id, hf.eos_token_id, hf.unk_token_id]
        if any(s is None for s in specials):
            raise SlsearchError(f"{folder}: tokenizer lacks one of bos/pad/eos/unk tokens")
        kept = list(dict.fromkeys(specials)) + sorted(used - set(specials))
        return cls(hf, kept_ids=kept, max_length=max_length)

    # --- use ----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.kept_ids) if self.kept_ids is not None else len(self.hf)

    def _map_one(self, i: int) -> int:
        if self.kept_ids is None:
            return i
        return self._to_new.get(i, self._to_new.get(self.hf.unk_token_id, 0))

    def ids(self, text: str) -> list[int]:
        """One sentence -> ids ending with </s>, truncated to max_length."""
        return self._ids([text])[0]

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        # one call for the batch: the fast tokenizer's per-call overhead dominates short sentences
        raws = self.hf(list(texts), add_special_tokens=False)["input_ids"]
        return [[self._map_one(i) for i in raw[: self.max_length - 1]] + [self.eos_id] for raw in raws]

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = self._ids(texts)
        lengths = np.array([len(s) for s in seqs])
        mask = np.arange(lengths.max())[None, :] < lengths[:, None]
        ids = np.full(mask.shape, self.pad_id, dtype=np.int64)
        ids[mask] = np.concatenate(seqs)
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (special tokens are dropped) -> sentence."""
        specials = {self.pad_id, self.bos_id, self.eos_id}
        ids = [int(i) for i in ids if int(i) not in specials]
        if self.kept_ids is not None:
            ids = [self.kept_ids[i] for i in ids]
        return self.hf.decode(ids, skip_special_tokens=True).strip()

    # --- files --------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.hf.save_pretrained(str(folder))
        (folder / TRIM_FILE).write_text(json.dumps({"max_length": self.max_length, "kept_ids": self.kept_ids}))

    @classmethod
    def load(cls, folder: str | Path) -> "TextTokenizer":
        from transformers import AutoTokenizer

        folder = Path(folder)
        trim = folder / TRIM_FILE
        if not trim.exists():
            raise SlsearchError(f"{folder}: no tokenizer saved with this checkpoint ({TRIM_FILE} missing)")
        meta = json.loads(trim.read_text())
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        return cls(hf, kept_ids=meta["kept_ids"], max_length=meta["max_length"])
