"""Training recipes: TOML files whose sections and keys match the dataclasses below.

The recipes that ship with the package live in slsearch/recipes/ and are found by name (`cpu`,
`demo`, ...; see `recipe_names`); any other recipe is given as a path to its TOML file.
Any value can be overridden with `section.key=value` (the value is read as TOML, so `3e-4`,
`true`, `"adamw"` and `adamw` all work). Unknown sections or keys are errors, never ignored.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from slsearch.errors import SlsearchError
from slsearch.models.losses import GLOSS_OBJECTIVES
from slsearch.models.model import ModelConfig
from slsearch.models.video_tower import FUSIONS, STREAMS
from slsearch.models.translator import DecodeConfig
from slsearch.rank.hubness_stage import BANK_SIZE
from slsearch.rank.likelihood_stage import DEFAULT_DEPTH

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


@dataclass
class TokenizerConfig:
    vocab_size: int = 4000  # BPE merges learned on the training sentences (scratch text tower)
    max_length: int = 64  # tokens per sentence, </s> included
    pretrained: str | None = None  # local mBART folder: its encoder + tokenizer, vocabulary trimmed


@dataclass
class LossConfig:
    cico_weight: float = 1.0  # CiCo fine-grained InfoNCE (implicit content learning)
    global_weight: float = 1.0  # InfoNCE on the global vectors (FAISS first stage)
    lm_weight: float = 1.0  # C²RL explicit context learning; alpha:beta = 1:1 was best in the paper
    label_smoothing: float = 0.2  # C²RL's value for the LM loss
    gloss_weight: float = 0.0  # CTC of a gloss head on the video tokens, for manifests with glosses; 0 = no head
    # Corpora without glosses: the gloss head learns each sentence's content words instead
    # (slsearch.data.pseudo_glosses), replacing any gloss column of the training manifest
    pseudo_glosses: bool = False
    pseudo_gloss_method: str = "lemmas"  # lemmas | frequency (slsearch.data.pseudo_glosses)
    pseudo_gloss_language: str = ""  # e.g. "de"; empty: told from the training sentences
    # ctc: glosses in signing order; set: spotted in any order (for pseudo-glosses, whose order is the
    # spoken sentence's; slsearch.models.losses.gloss_set)
    gloss_objective: str = "ctc"
    stream_weight: float = 1.0  # several visual streams (model.streams): each stream's own contrastive loss
    inter_weight: float = 1.0  # several visual streams: InfoNCE between the streams of the same clip


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.01  # not applied to norms, biases and logit scales
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # AdamW's
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0  # max global grad norm; 0 disables


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64  # contrastive negatives come from the batch: bigger is better if it fits
    seed: int = 0
    patience: int = 6  # stop after this many epochs without a better dev score; 0 = never
    # A guard, not a budget: stop training (then evaluate) after this much training time; 0 = no limit.
    # The schedule follows `epochs` only; a run the guard stops ends unannealed (result: "time_limit").
    max_minutes: float = 0.0
    threads: int = 0  # torch CPU threads; 0 = auto (training.loop.pick_threads: measured on quiet and loaded CPUs)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    max_frames: int = 400  # longer training clips are subsampled to this many frames
    # memory | disk | auto: where the loaded features live during training; disk maps them from a file in
    # the run's folder (slsearch.training.data); auto is disk for a model with an RGB stream (18 kB a frame)
    features: str = "auto"
    time_stretch: float = 0.2  # augmentation: random speed factor in [1 - x, 1 + x]
    # share of an epoch's batches made of textual neighbours (training.data.with_neighbour_batches): hard
    # negatives, sentences that differ in a word or two, where a random batch holds unrelated ones
    neighbour_batches: float = 0.0
    eval_batch_size: int = 64
    log_every: int = 10  # steps between progress-bar updates of the loss
    stage: str = "joint"  # joint: contrastive + LM (C²RL); translate: video encoder + decoder on the LM loss only
    init: str = ""  # checkpoint folder to start from (the translate stage starts from a joint run)
    dev_beam: int = 1  # beam of the dev translations that pick the translate stage's best epoch (by BLEU-4)
    # retrieval: the towers (C²RL); recognizer: the CVT-SLR gloss recogniser (slsearch.training.recognizer),
    # which reads [vae] and [recognizer] and of [model] only the visual module's keys
    kind: str = "retrieval"


@dataclass
class LexiconConfig:
    # The gloss lexicon (slsearch.models.lexicon), learnt after a joint run whose manifest has glosses
    # and fused with the CiCo score at weights picked on dev. On SynPhoenix dev, cutting words to 5
    # characters, 5 EM iterations, smoothing 0.1 and the diagonal alignment were best
    # (benchmarks/RESULTS.md).
    enabled: bool = True
    prefix: int = 5  # sentence words cut to this many characters; 0 = whole words
    iterations: int = 5  # EM iterations of IBM Model 1 (and as many of the diagonal model after it)
    smoothing: float = 0.1  # weight of the unit prior in p(unit | candidate)
    alignment: str = "diagonal"  # 'diagonal': words and glosses at similar positions align; 'ibm1': any order
    tension: float = 4.0  # diagonal: how sharply it prefers equal relative positions
    # learn the table from what the model reads in the training clips, not from the manifest's glosses
    # (`slsearch lexicon --from-readings`): it then knows the readings' errors
    from_readings: bool = False


@dataclass
class LikelihoodConfig:
    # The decoder-likelihood re-ranking stage (slsearch.models.likelihood), calibrated on dev after a
    # joint run with the LM loss: it re-scores the first `depth` candidates of CiCo + lexicon.
    enabled: bool = True
    depth: int = DEFAULT_DEPTH  # why 20 is said there


@dataclass
class HubnessConfig:
    # The V2T hubness stage (slsearch.rank.hubness_stage), fitted on dev after a joint run: a bank of this
    # many training clips (a fixed sample) tells which sentences score high against any clip. 0: none.
    bank: int = BANK_SIZE


@dataclass
class VAEConfig:
    # CVT-SLR step 1: the textual module, a VAE pretrained on the training glosses alone (Gloss2Gloss).
    # Its width is the recogniser's (model.video_dim): the two share the gloss classifier.
    layers: int = 2  # self-attention layers of the posterior encoder (the paper: 2, 4 heads)
    heads: int = 4
    ffn: int = 256
    lstm_hidden: int = 128  # Bi-LSTM decoder (the paper: 2 layers of 2 x 512)
    lstm_layers: int = 2
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    kl_weight: float = 1.0  # L_VAE = kl_weight * KL + reconstruction
    word_dropout: float = 0.1  # share of input glosses blanked in pretraining


@dataclass
class RecognizerConfig:
    # CVT-SLR step 2. The ablation rows: pretrained_vae=false, align_weight=0 (neither); pretrained_vae=true,
    # align_weight=0 (VAE only); both (the full model).
    pretrained_vae: bool = True  # transfer the step-1 VAE (else its architecture from scratch)
    # the visual module: "conv" = a pose front end + temporal convolution (the paper's shape); "tower" = the
    # --init retrieval model's whole video tower (its streams and transformer), its gloss head as the
    # shared classifier's start
    visual: str = "conv"
    # what recognition reads: "textual" (the contextual module, as the paper), "visual" (the shared classifier
    # on the visual module, which the textual module and the alignment loss train too), or "auto": the better
    # on dev, epoch by epoch
    read: str = "auto"
    align_weight: float = 1.0  # contrastive visual-textual alignment loss; 0 = off
    align_temperature: float = 0.1  # of the alignment's softmax over the batch
    visual_ctc_weight: float = 1.0  # CTC on the visual features through the shared classifier
    adapter_hidden: int = 0  # the adapter's hidden width; 0 = gloss vocabulary + 1
    lm_k: float = 0.1  # add-k smoothing of the gloss bigram LM saved with the run (lm.json)
    dev_beam: int = 1  # CTC beam of the dev WER that picks the best epoch (1 = greedy, fast)


@dataclass
class Recipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # how the checkpoint translates by default
    lexicon: LexiconConfig = field(default_factory=LexiconConfig)
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)
    hubness: HubnessConfig = field(default_factory=HubnessConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# keys of ModelConfig filled in by the code, never by a recipe
DERIVED_MODEL_KEYS = {"vocab_size", "text_mbart", "text_model_source", "max_text_tokens", "glosses"}


def _coerce(value: Any, current: Any, where: str) -> Any:
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise SlsearchError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(current):
        raise SlsearchError(f"{where}: expected {type(current).__name__}, got {value!r}")
    return value


def _apply(recipe: Recipe, section: str, key: str, value: Any, where: str) -> None:
    sections = {f.name for f in fields(Recipe)}
    if section not in sections:
        raise SlsearchError(f"{where}: unknown recipe section [{section}] (known: {', '.join(sorted(sections))})")
    part = getattr(recipe, section)
    names = {f.name for f in fields(part)} - (DERIVED_MODEL_KEYS if section == "model" else set())
    if key not in names:
        raise SlsearchError(f"{where}: unknown recipe key {section}.{key} (known: {', '.join(sorted(names))})")
    setattr(part, key, _coerce(value, getattr(part, key), f"{where}: {section}.{key}"))


def parse_override(text: str) -> tuple[str, str, Any]:
    """'optim.lr=3e-4' -> ('optim', 'lr', 0.0003)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise SlsearchError(f"--set {text!r}: expected section.key=value, e.g. optim.lr=3e-4")
    name, raw = text.split("=", 1)
    section, key = name.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    return section, key, value


def _packaged() -> Traversable:
    return resources.files("slsearch") / "recipes"


def recipe_names() -> list[str]:
    """Names of the recipes that ship with the package: ['cpu', 'demo', ...]."""
    return sorted(f.name[: -len(".toml")] for f in _packaged().iterdir() if f.name.endswith(".toml"))


def find_recipe(spec: str | Path | Traversable) -> Traversable:
    """A recipe by name ('cpu': a packaged recipe) or by path ('my/run.toml', a file anywhere).

    A bare word (no path separator, no .toml) names a packaged recipe; the returned object has
    `.name` and `.read_text()` (a `Path` for a path, or for a package installed as files).
    """
    if not isinstance(spec, (str, Path)):
        return spec  # already found (a packaged Traversable)
    text = str(spec)
    bare = not any(sep and sep in text for sep in ("/", os.sep, os.altsep)) and not text.endswith(".toml")
    if bare:
        packaged = _packaged() / f"{text}.toml"
        if packaged.is_file():
            return packaged
        if not Path(text).is_file():
            raise SlsearchError(f"unknown recipe {text!r}: the packaged recipes are {', '.join(recipe_names())} "
                                f"(or give a path to a .toml file)")
    path = Path(spec)
    if not path.is_file():
        raise SlsearchError(f"{path}: recipe not found (packaged recipes by name: {', '.join(recipe_names())})")
    return path


def load_recipe(path: str | Path | Traversable | None, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe (a packaged name such as 'cpu', a TOML path, or None = all defaults) and apply
    `section.key=value` overrides."""
    recipe = Recipe()
    if path is not None:
        _apply_file(recipe, find_recipe(path), ())
    for text in overrides:
        section, key, value = parse_override(text)
        _apply(recipe, section, key, value, f"--set {text}")
    _validate(recipe)
    return recipe


def _apply_file(recipe: Recipe, path: Traversable | Path, seen: tuple[str, ...]) -> None:
    """A recipe file's values onto `recipe`; a top-level `base = "cpu"` applies that recipe's first, so a
    variant says only what differs."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SlsearchError(f"{path}: not valid TOML ({e})") from e
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or str(path) in seen:
            raise SlsearchError(f"{path}: base must name another recipe, once (not {base!r})")
        _apply_file(recipe, find_recipe(base), seen + (str(path),))
    for section, values in data.items():
        if not isinstance(values, dict):
            raise SlsearchError(f"{path}: top-level key {section!r} must be a [section]")
        for key, value in values.items():
            _apply(recipe, section, key, value, str(path))


# Switches that no recipe used, removed in 0.2 (issue 15); checkpoints saved before still name them
RETIRED_KEYS = {("optim", "optimizer"), ("optim", "momentum"), ("train", "feature_noise"),
                ("train", "concat_prob"), ("train", "ema_decay")}


def recipe_from_dict(d: dict[str, Any]) -> Recipe:
    """The recipe a checkpoint saved (its retired switches, at their defaults then, left out)."""
    recipe = Recipe()
    for section, values in d.items():
        for key, value in values.items():
            if (section, key) in RETIRED_KEYS:
                continue
            if section == "model" and key in DERIVED_MODEL_KEYS:
                setattr(recipe.model, key, value)
            else:
                _apply(recipe, section, key, value, "checkpoint recipe")
    return recipe


def _validate(r: Recipe) -> None:
    checks = [
        (r.train.precision in ("fp32", "bf16"), f"train.precision must be fp32 or bf16, not {r.train.precision!r}"),
        (r.train.device in ("auto", "cpu", "cuda"), "train.device must be auto, cpu or cuda"),
        (r.train.batch_size >= 2, "train.batch_size must be at least 2 (contrastive negatives)"),
        (r.train.epochs >= 1, "train.epochs must be at least 1"),
        (0 <= r.train.neighbour_batches <= 1, "train.neighbour_batches must be between 0 and 1"),
        (r.optim.lr > 0, "optim.lr must be positive"),
        (r.model.front_end == "pose", f"model.front_end {r.model.front_end!r} is not available (pose)"),
        (bool(r.model.streams) and all(isinstance(st, str) and st in STREAMS for st in r.model.streams),
         f"model.streams {r.model.streams!r}: the streams available are {', '.join(STREAMS)}"),
        (len(set(map(str, r.model.streams))) == len(r.model.streams), "model.streams names a stream twice"),
        (r.model.fusion in FUSIONS, f"model.fusion {r.model.fusion!r} is not one of {', '.join(FUSIONS)}"),
        (r.model.stream_window >= 1 and r.model.stream_stride >= 1, "model.stream_window and stream_stride must be >= 1"),
        (r.train.max_frames >= 4, "train.max_frames must be at least the temporal stride 4"),
        (r.train.features in ("auto", "memory", "disk"),
         f"train.features must be auto, memory or disk, not {r.train.features!r}"),
        (r.loss.pseudo_gloss_method in ("lemmas", "frequency"),
         f"loss.pseudo_gloss_method must be lemmas or frequency, not {r.loss.pseudo_gloss_method!r}"),
        (r.train.stage in ("joint", "translate"), f"train.stage must be joint or translate, not {r.train.stage!r}"),
        (r.train.kind in ("retrieval", "recognizer"), f"train.kind must be retrieval or recognizer, not {r.train.kind!r}"),
        (r.vae.epochs >= 0 and r.vae.batch_size >= 1 and r.vae.lr > 0, "vae: epochs >= 0, batch_size >= 1, lr > 0"),
        (r.model.video_dim % r.vae.heads == 0, "vae.heads must divide model.video_dim"),
        (r.recognizer.align_weight >= 0 and r.recognizer.align_temperature > 0,
         "recognizer.align_weight must be >= 0 and recognizer.align_temperature > 0"),
        (r.recognizer.lm_k > 0, "recognizer.lm_k must be positive"),
        (r.recognizer.visual in ("conv", "tower"), "recognizer.visual must be conv or tower"),
        (r.recognizer.read in ("auto", "textual", "visual"), "recognizer.read must be auto, textual or visual"),
        (r.recognizer.visual == "conv" or bool(r.train.init),
         "recognizer.visual = tower starts from a retrieval model's video tower: give --init RUN"),
        (r.recognizer.dev_beam >= 1, "recognizer.dev_beam must be at least 1"),
        (r.train.stage == "joint" or bool(r.train.init), "train.stage translate needs train.init (a joint checkpoint)"),
        (r.train.stage == "translate" or r.loss.cico_weight + r.loss.global_weight > 0,
         "at least one contrastive loss weight must be > 0"),
        (r.train.stage == "joint" or r.loss.lm_weight > 0, "the translate stage needs loss.lm_weight > 0"),
        (r.decode.beam >= 1, "decode.beam must be at least 1"),
        (r.decode.no_repeat_ngram >= 0, "decode.no_repeat_ngram must be 0 (off) or positive"),
        (r.decode.length_penalty >= 0, "decode.length_penalty must not be negative"),
        (r.loss.gloss_objective in GLOSS_OBJECTIVES,
         f"loss.gloss_objective must be one of {', '.join(GLOSS_OBJECTIVES)}, not {r.loss.gloss_objective!r}"),
        (r.lexicon.prefix >= 0, "lexicon.prefix must be 0 (whole words) or positive"),
        (r.lexicon.iterations >= 1, "lexicon.iterations must be at least 1"),
        (0 < r.lexicon.smoothing < 1, "lexicon.smoothing must be between 0 and 1"),
        (r.lexicon.alignment in ("ibm1", "diagonal"), "lexicon.alignment must be 'ibm1' or 'diagonal'"),
        (r.lexicon.tension > 0, "lexicon.tension must be positive"),
        (r.likelihood.depth >= 1, "likelihood.depth must be at least 1"),
        (r.hubness.bank >= 0, "hubness.bank must be 0 (no hubness stage) or positive"),
        (0 <= r.model.lm_prior_rate < 1, "model.lm_prior_rate must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise SlsearchError(f"recipe: {message}")
