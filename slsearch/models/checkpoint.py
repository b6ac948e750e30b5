"""A checkpoint is a folder that rebuilds the model with one call:

    config.json        format, format_version, slsearch version, model config, training recipe
    model.safetensors  all weights
    tokenizer.json ... the tokenizer (+ vocab_trim.json)
    train_log.jsonl    per-epoch loss, dev metrics, throughput (written by training)
    lexicon.npz        the gloss lexicon and its fusion weights (joint runs with glosses)
    likelihood.json    the decoder-likelihood re-ranking stage's dev-picked weights (joint runs)

`model.checkpoint_hash` (first 16 hex digits of the weights' sha256) names the weights; indexes
record it so that a query never mixes vectors of two models, and the two ranking stages record the
hash they were fitted on (`slsearch.rank.model.load_retrieval_model` leaves out stale ones).
`load_model` gives the network alone; `load_retrieval_model` the network with its ranking stages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from slsearch import __version__
from slsearch.errors import SlsearchError

FORMAT = "slsearch-checkpoint"
FORMAT_VERSION = 2  # 2: ranking stages record the weights they were fitted on
READS_VERSIONS = (1, 2)  # 1 differs only there: its stages always belong to its weights
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def save_model(model, folder: str | Path, recipe: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> Path:
    """Write config.json, model.safetensors and the tokenizer into `folder`; set model.checkpoint_hash."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage (the decoder ties input and output embeddings): drop the tie.
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if k != "decoder.lm.lm_head.weight"}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT})
    tmp.replace(folder / WEIGHTS_FILE)
    model.tokenizer.save(folder)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "slsearch_version": __version__,
              "model": asdict(model.config), "recipe": recipe or {}, **(extra or {})}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False))
    model.checkpoint_hash = file_hash(folder / WEIGHTS_FILE)
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint folder, checked to be ours and of a version this code reads."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SlsearchError(f"{folder}: checkpoint folder not found")
    cfg_path = folder / CONFIG_FILE
    from slsearch.models.cvt_slr import is_recognizer_folder

    if is_recognizer_folder(folder):  # a CVT-SLR run reads glosses; it does not embed clips or sentences
        raise SlsearchError(f"{folder}: a gloss recogniser (CVT-SLR), not a retrieval model; use it with "
                            "`slsearch recognize` and `slsearch eval --wer`, and a retrieval model here")
    if not cfg_path.exists() or not (folder / WEIGHTS_FILE).exists():
        raise SlsearchError(f"{folder}: not an slsearch checkpoint ({CONFIG_FILE} or {WEIGHTS_FILE} missing)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise SlsearchError(f"{cfg_path}: unreadable JSON ({e})") from e
    if cfg.get("format") != FORMAT:
        raise SlsearchError(f"{folder}: not an slsearch checkpoint (format {cfg.get('format')!r}, "
                            f"expected {FORMAT!r})")
    if cfg.get("format_version") not in READS_VERSIONS:
        raise SlsearchError(f"{folder}: checkpoint format version {cfg.get('format_version')} is not supported "
                            f"by slsearch {__version__} (reads versions {', '.join(map(str, READS_VERSIONS))}); "
                            "retrain or upgrade")
    return cfg


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the network (weights and tokenizer) from a checkpoint folder, in eval mode; refuses foreign or
    incompatible ones. Its ranking stages come with `slsearch.rank.load_retrieval_model`."""
    from slsearch.models.model import SignTextModel, config_from_dict
    from slsearch.models.tokenizer import TextTokenizer

    folder = Path(path)
    cfg = read_config(folder)
    try:
        config = config_from_dict(cfg["model"])
    except (KeyError, TypeError) as e:
        raise SlsearchError(f"{folder}: incompatible model config ({e})") from e
    tokenizer = TextTokenizer.load(folder)
    try:
        model = SignTextModel(config, tokenizer)
    except ValueError as e:
        raise SlsearchError(f"{folder}: {e}") from e
    state = load_file(str(folder / WEIGHTS_FILE))
    state["decoder.lm.lm_head.weight"] = state.get("decoder.lm.model.decoder.embed_tokens.weight")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise SlsearchError(f"{folder}: weights do not match the model config ({' '.join(first)})") from e
    model.checkpoint_hash = file_hash(folder / WEIGHTS_FILE)
    return model.to(device).eval()
