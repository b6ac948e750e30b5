"""The translator-reading stage (V2T): the translate-stage model reads each query clip's first candidates again.

The retrieval model's decoder learns to write sentences while its tower learns to match them (C²RL). The
translate stage (`slsearch train --recipe translate --init RUN`) fine-tunes a copy of the tower and the
decoder for translation alone, and reads a clip better: on SynPhoenix dev without glosses its
log p(s | c) - log p(s) re-ranks V2T candidates better than the retrieval model's own (MRR 82.4 against 81.4),
and the two together better still (benchmarks/RESULTS.md, "V2T re-read by the translation model"). So V2T
re-reads each query clip's first `depth` candidates (after the likelihood stage) with that model: its own
encoder's token states of the clip, its own null clip's prior of each sentence; standardised and added with a
weight picked on dev by mean reciprocal rank. On a CPU it reads with an int8 copy of its decoder, as the
likelihood stage does.

V2T only: a V2T query is one clip, encoded once more (one encoder pass, `depth` decoder reads). T2V would need
the second encoder's token states of every indexed clip. The translate checkpoint is copied into the retrieval
checkpoint (`reader/`), so the folder stays whole when moved.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from slsearch.errors import SlsearchError
from slsearch.progress import Progress
from slsearch.rank.likelihood_stage import LikelihoodStage

READER_FILE = "reader.json"
READER_DIR = "reader"


def check_reader(net, reader_net, where: str) -> None:
    """Refuse a reader that cannot read the retrieval model's clips or has no sentence prior."""
    from slsearch.models.likelihood import has_prior

    ours, theirs = net.config, reader_net.config
    for key in ("front_end", "streams", "input_dim"):
        if getattr(ours, key) != getattr(theirs, key):
            raise SlsearchError(f"{where}: its {key} is {getattr(theirs, key)!r}, the retrieval model's "
                                f"{getattr(ours, key)!r}; a reader must read the same clips (train it with "
                                "`slsearch train --recipe translate --init` on the retrieval checkpoint)")
    if not has_prior(reader_net):
        raise SlsearchError(f"{where}: it has no sentence prior (model.lm_prior_rate = 0), which V2T needs")


@dataclass
class ReaderStage:
    folder: Path  # the translate checkpoint it reads with
    scorer: LikelihoodStage = field(default_factory=LikelihoodStage)  # depth and the V2T fusion weight
    reader_hash: str | None = None  # the translate checkpoint's weights it was fitted with
    fitted_on: str | None = None  # the retrieval checkpoint whose dev scores picked the weight
    _priors: dict[str, float] = field(default_factory=dict, repr=False)

    @cached_property
    def net(self):
        """The translate-stage network, loaded on first use (T2V searches never need it)."""
        from slsearch.models.checkpoint import load_model

        net = load_model(self.folder)
        if self.reader_hash is not None and net.checkpoint_hash != self.reader_hash:
            raise SlsearchError(f"{self.folder}: these are not the weights the reader stage was fitted with; "
                                "run `slsearch calibrate --reader` again")
        return net

    @cached_property
    def fast_decoder(self):
        """What it reads candidates with: on a CPU an int8 copy of its decoder (20 reads of a V2T query 32 -> 11 ms
        on one core, benchmarks/RESULTS.md), as RetrievalModel.fast_decoder; stages fitted in float32 (no
        `v2t_fast` in reader.json) keep float32."""
        from slsearch.rank.model import fast_decoder_of

        return fast_decoder_of(self.net) if self.scorer.v2t_fast else None

    def applies(self, direction: str) -> bool:
        return direction == "v2t" and self.scorer.applies("v2t")

    def encode(self, inputs: Sequence, progress: Progress | None = None) -> list[np.ndarray]:
        """The reader's own token states of clips (what `encode_videos` takes)."""
        from slsearch.encode import encode_videos

        return encode_videos(self.net, inputs, progress=progress).tokens

    def priors(self, texts: Sequence[str]) -> np.ndarray:
        """log p(sentence) under the reader's decoder, each sentence computed once."""
        from slsearch.models.likelihood import sentence_prior

        missing = list(dict.fromkeys(t for t in texts if t not in self._priors))
        if missing:
            self._priors.update(zip(missing, sentence_prior(self.net, missing).tolist()))
        return np.array([self._priors[t] for t in texts], np.float32)

    def pair_scores(self, previous: np.ndarray, reader_tokens: Sequence[np.ndarray], texts: Sequence[str],
                    progress: Progress | None = None) -> np.ndarray:
        """The reader's PMI of each V2T query's first `depth` candidates in a (clips, texts) matrix; NaN elsewhere."""
        return self.scorer.pair_scores(self.net, previous, reader_tokens, texts, "v2t", self.priors(texts), progress,
                                       self.fast_decoder)

    def combine(self, previous: np.ndarray, raw: np.ndarray) -> np.ndarray:
        return self.scorer.combine(previous, raw, "v2t")

    def fit(self, previous: np.ndarray, reader_tokens: Sequence[np.ndarray], texts: Sequence[str]) -> dict[str, float]:
        """Pick the V2T weight by MRR on a paired dev set; `previous`: its (clips, texts) matrix after the
        likelihood stage."""
        self.reader_hash = self.net.checkpoint_hash
        self.scorer.v2t_fast = True  # fitted, and so read, with the fast decoder from now on
        self.__dict__.pop("fast_decoder", None)
        self.scorer.fit(self.net, {"v2t": previous}, reader_tokens, texts, directions=("v2t",), by="MRR",
                        fast_decoder=self.fast_decoder)
        return self.scorer.fusion.get("v2t", {})

    # --- files ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """reader.json, and the translate checkpoint's files copied into reader/ unless they are there."""
        folder = Path(folder)
        if self.reader_hash is None:
            self.reader_hash = self.net.checkpoint_hash
        target = folder / READER_DIR
        if self.folder.resolve() != target.resolve():
            tmp = folder / (READER_DIR + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for f in self.folder.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
            shutil.rmtree(target, ignore_errors=True)
            tmp.replace(target)
            self.folder = target
        path = folder / READER_FILE
        tmp_json = path.with_name(path.name + ".tmp")
        tmp_json.write_text(json.dumps({**self.scorer.to_dict(), "reader_hash": self.reader_hash,
                                        "fitted_on": self.fitted_on}, indent=2))
        tmp_json.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "ReaderStage | None":
        """The stage saved in a checkpoint folder (its reader loaded on first use), or None when it has none."""
        path = Path(folder) / READER_FILE
        try:
            d = json.loads(path.read_text())
            stage = cls(Path(folder) / READER_DIR, LikelihoodStage.from_dict(d), d.get("reader_hash"), d.get("fitted_on"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as e:
            raise SlsearchError(f"{path}: unreadable reader stage ({e}); run `slsearch calibrate --reader` again") from None
        if not stage.folder.is_dir():
            raise SlsearchError(f"{stage.folder}: the reader stage's translate checkpoint is missing; "
                                "run `slsearch calibrate --reader` again")
        return stage
