"""CVT-SLR (Zheng et al., CVPR 2023) on the pose video encoder: a gloss recogniser.

Step 1, the textual module: `GlossVAE`, pretrained on the training glosses alone (Gloss2Gloss: the
gloss sequence is its own target). Self-attention encoder -> mean and log-variance (two linear
layers) -> z = mu + eps * sigma -> Bi-LSTM decoder -> a gloss per position; loss KL + cross-entropy.

Step 2, the recogniser `CVTSLR`:

    pose features -> PoseFrontEnd -> 2 x TemporalBlock (the video tower's visual module, T/4)
        -> v (B, T', d) -- shared classifier --> visual gloss logits (auxiliary CTC)
        -> softmax -> video-gloss adapter (MLP; its last layer starts as the VAE's word embeddings)
        -> the VAE's encoder, mean only (no noise after transfer) -> s (B, T', d)
        -- shared classifier --> gloss logits (CTC; what recognition reads)

and the contrastive alignment loss between the L2-normalised visual and textual features of the
clips of a batch (`alignment_loss`, positives on the diagonal). Gloss ids are 1-based; 0 is the CTC
blank and the VAE's padding.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from slsearch.data.features import FEATURE_DIM
from slsearch.errors import SlsearchError
from slsearch.models.video_tower import TEMPORAL_STRIDE, PoseFrontEnd, TemporalBlock, _mask, sinusoidal_positions

RECOGNIZER_FORMAT = "slsearch-recognizer"
RECOGNIZER_VERSION = 1
VAE_FORMAT = "slsearch-gloss-vae"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "recognizer.safetensors"
VAE_DIR = "vae"
VAE_WEIGHTS = "vae.safetensors"
LM_FILE = "lm.json"


# --- step 1: the textual module ------------------------------------------------------------------

@dataclass
class VAEShape:
    glosses: int  # gloss types (ids 1..glosses; 0 = padding)
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    lstm_hidden: int = 128
    lstm_layers: int = 2
    dropout: float = 0.1


class GlossEncoder(nn.Module):
    """Word embeddings + self-attention encoder + the two linear layers of the posterior q(z | G).
    `encode` takes embeddings (B, L, d) — gloss embeddings in step 1, the adapter's output in step 2."""

    def __init__(self, s: VAEShape):
        super().__init__()
        self.dim = s.dim
        self.embed = nn.Embedding(s.glosses + 1, s.dim, padding_idx=0)
        layer = nn.TransformerEncoderLayer(s.dim, s.heads, s.ffn, s.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, s.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(s.dim)
        self.to_mu = nn.Linear(s.dim, s.dim)
        self.to_logvar = nn.Linear(s.dim, s.dim)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, d) embeddings, mask (B, L) True where valid -> (mu, logvar), each (B, L, d)."""
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
        h = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        return self.to_mu(h), self.to_logvar(h)


class GlossVAE(nn.Module):
    def __init__(self, s: VAEShape):
        super().__init__()
        self.shape = s
        self.encoder = GlossEncoder(s)
        self.decoder = nn.LSTM(s.dim, s.lstm_hidden, s.lstm_layers, batch_first=True, bidirectional=True,
                               dropout=s.dropout if s.lstm_layers > 1 else 0.0)
        self.out = nn.Linear(2 * s.lstm_hidden, s.glosses + 1)

    def forward(self, ids: torch.Tensor, sample: bool = True, word_dropout: float = 0.0) -> dict[str, torch.Tensor]:
        """ids (B, L) gloss ids, 0-padded -> logits (B, L, glosses + 1), mu, logvar, mask."""
        mask = ids > 0
        emb = self.encoder.embed(ids)
        if word_dropout and self.training:
            keep = (torch.rand(ids.shape, device=ids.device) >= word_dropout).to(emb.dtype)
            emb = emb * keep[..., None]
        mu, logvar = self.encoder.encode(emb, mask)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(z, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
        h, _ = self.decoder(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])
        return {"logits": self.out(h), "mu": mu, "logvar": logvar, "mask": mask}


def vae_loss(out: dict[str, torch.Tensor], ids: torch.Tensor, kl_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Gloss2Gloss cross-entropy (per valid position) + KL(q(z|G) || N(0, I)) (mean per latent element)."""
    m = out["mask"]
    rec = F.cross_entropy(out["logits"][m], ids[m])
    mu, logvar = out["mu"][m], out["logvar"][m]
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()
    return {"reconstruction": rec, "kl": kl_weight * kl}


@torch.no_grad()
def reconstruction_accuracy(vae: GlossVAE, sequences: list[list[int]], batch_size: int = 256) -> float:
    """Share of gloss positions the VAE gives back (mean of q, no noise) — how well it learnt the glosses."""
    was = vae.training
    vae.eval()
    right = total = 0
    for i in range(0, len(sequences), batch_size):
        ids = pad_ids(sequences[i:i + batch_size], next(vae.parameters()).device)
        out = vae(ids, sample=False)
        m = out["mask"]
        right += int((out["logits"].argmax(-1)[m] == ids[m]).sum())
        total += int(m.sum())
    vae.train(was)
    return right / max(1, total)


def pad_ids(sequences: list[list[int]], device=None) -> torch.Tensor:
    longest = max(1, max((len(s) for s in sequences), default=1))
    out = torch.zeros(len(sequences), longest, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out.to(device) if device is not None else out


def save_vae(vae: GlossVAE, folder: Path, glosses: list[str], extra: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}, str(folder / VAE_WEIGHTS))
    (folder / CONFIG_FILE).write_text(json.dumps({"format": VAE_FORMAT, "shape": asdict(vae.shape),
                                                  "glosses": glosses, **extra}, indent=2, ensure_ascii=False))
    return folder


def load_vae(folder: Path) -> tuple[GlossVAE, dict[str, Any]]:
    from safetensors.torch import load_file

    try:
        cfg = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SlsearchError(f"{folder}: not a saved gloss VAE ({e})") from e
    if cfg.get("format") != VAE_FORMAT:
        raise SlsearchError(f"{folder}: not a saved gloss VAE (format {cfg.get('format')!r})")
    vae = GlossVAE(VAEShape(**cfg["shape"]))
    vae.load_state_dict(load_file(str(folder / VAE_WEIGHTS)))
    return vae.eval(), cfg


# --- step 2: the recogniser ----------------------------------------------------------------------

@dataclass
class RecognizerModelConfig:
    glosses: list[str] = field(default_factory=list)
    input_dim: int = FEATURE_DIM
    dim: int = 128  # visual module and VAE width (one width: the classifier is shared between them)
    conv_kernel: int = 5
    dropout: float = 0.1
    adapter_hidden: int = 0  # width of the adapter's two hidden layers; 0 = the gloss vocabulary + 1
    vae: dict[str, Any] = field(default_factory=dict)  # VAEShape of the textual module
    # None: the visual module is a pose front end + temporal convolution. Else the video tower of the
    # retrieval model this config (ModelConfig keys of TOWER_KEYS) describes, all its streams and its
    # transformer encoder: recognizer.visual = "tower" with --init
    tower: dict[str, Any] | None = None
    # the branch recognition reads: "textual" (the contextual module's output, the paper's) or "visual" (the
    # shared classifier on the visual module); training keeps the one with the better dev WER
    reads: str = "textual"


# the retrieval ModelConfig keys that shape a video tower (its gloss head is the recogniser's classifier)
TOWER_KEYS = ("streams", "fusion", "stream_window", "stream_stride", "input_dim", "video_dim", "video_layers",
              "video_heads", "video_ffn", "conv_kernel", "dropout", "token_dim", "embed_dim")


class Adapter(nn.Module):
    """Video-gloss adapter: gloss probabilities (.., C+1) -> textual embeddings (.., d).

    out = W_E (p + MLP(p)), a fully connected MLP with two hidden layers around a residual; the last
    layer W_E starts as the VAE's word-embedding table and the MLP's output layer at zero, so before
    training the adapter maps a gloss distribution to its expected VAE word embedding."""

    def __init__(self, classes: int, dim: int, hidden: int = 0):
        super().__init__()
        hidden = hidden or classes
        self.mlp = nn.Sequential(nn.Linear(classes, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, classes))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.embed = nn.Linear(classes, dim, bias=False)

    def init_from_embeddings(self, table: torch.Tensor) -> None:
        """table (C+1, d): the VAE's word embeddings."""
        with torch.no_grad():
            self.embed.weight.copy_(table.t())

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.embed(p + self.mlp(p))


class CVTSLR(nn.Module):
    """The recogniser. `encode_video` has the retrieval model's signature, so `slsearch.recognition`
    reads either."""

    is_recognizer = True
    temporal_stride = TEMPORAL_STRIDE

    def __init__(self, config: RecognizerModelConfig):
        super().__init__()
        self.config = config
        C = len(config.glosses)
        d = config.dim
        shape = VAEShape(**{**config.vae, "glosses": C, "dim": d})
        if config.tower is not None:
            from slsearch.models.model import ModelConfig, build_video_tower

            tower = ModelConfig(**config.tower)
            if tower.video_dim != d:
                raise SlsearchError(f"recogniser width {d} differs from its video tower's {tower.video_dim}")
            self.tower = build_video_tower(tower)
        else:
            self.tower = None
            self.front_end = PoseFrontEnd(d, config.input_dim, config.dropout)
            self.blocks = nn.ModuleList([TemporalBlock(d, config.conv_kernel), TemporalBlock(d, config.conv_kernel)])
        self.classifier = nn.Linear(d, C + 1)  # shared by the visual and the textual features
        self.adapter = Adapter(C + 1, d, config.adapter_hidden)
        self.textual = GlossEncoder(shape)
        self.adapter.init_from_embeddings(self.textual.embed.weight)
        self.checkpoint_hash = "untrained"

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    @property
    def front_end(self):
        """What prepares a clip's features (slsearch.recognition and training read it): the tower's front end
        makes every stream's input. A property, so the tower's is not saved twice."""
        return self.tower.front_end if self.tower is not None else self._modules["front_end"]

    def load_vae(self, vae: GlossVAE) -> None:
        """Transfer the pretrained textual module: its encoder, and its word embeddings into the adapter."""
        self.textual.load_state_dict(vae.encoder.state_dict())
        self.adapter.init_from_embeddings(self.textual.embed.weight)

    def load_visual(self, video_tower, glosses: list[str] | None = None) -> int:
        """Start the visual module from a retrieval model's video tower: its front end and temporal conv, or
        (tower mode) all of it, and then the shared classifier from its gloss head, row by row for the glosses
        both know (`glosses`: the head's vocabulary). Returns how many gloss rows were copied."""
        if self.tower is not None:
            state = {k: v for k, v in video_tower.state_dict().items() if not k.startswith("gloss_head.")}
            self.tower.load_state_dict(state, strict=False)
            missing = set(self.tower.state_dict()) - set(state)
            if missing:
                raise SlsearchError(f"the retrieval video tower lacks {len(missing)} weights of the recogniser's "
                                    f"(e.g. {sorted(missing)[0]})")
        else:
            self.front_end.load_state_dict(video_tower.front_end.state_dict())
            self.blocks.load_state_dict(video_tower.blocks.state_dict())
            return 0
        head = getattr(video_tower, "gloss_head", None)
        if head is None or not glosses or head.weight.shape[1] != self.classifier.weight.shape[1]:
            return 0
        row = {g: i + 1 for i, g in enumerate(glosses)}
        pairs = [(0, 0)] + [(i + 1, row[g]) for i, g in enumerate(self.config.glosses) if g in row]
        ours, theirs = (torch.tensor(x) for x in zip(*pairs))
        with torch.no_grad():
            self.classifier.weight[ours] = head.weight[theirs]
            self.classifier.bias[ours] = head.bias[theirs]
        return len(pairs) - 1

    def visual_features(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> the visual module's features (B, T', d), mask (B, T')."""
        if self.tower is not None:
            out = self.tower(features, lengths)
            return out["states"], out["mask"]
        x = self.front_end(features) * _mask(lengths, features.shape[1])[..., None]
        x = x.transpose(1, 2)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        v = x.transpose(1, 2)  # (B, T', d)
        return v, _mask(lengths, v.shape[1]).bool()

    def encode_video(self, features: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> textual_logits and visual_logits (B, T', C+1), gloss_logits (the
        branch config.reads names: what recognition reads), mask (B, T'), visual / textual features (B, T', d),
        zero on padding."""
        v, mask = self.visual_features(features, lengths)
        m = mask[..., None].to(v.dtype)
        v = v * m
        visual_logits = self.classifier(v)
        a = self.adapter(visual_logits.softmax(-1)) * m
        s, _ = self.textual.encode(a, mask)  # the mean only: no noise after transfer
        s = s * m
        textual_logits = self.classifier(s)
        return {"gloss_logits": visual_logits if self.config.reads == "visual" else textual_logits,
                "textual_logits": textual_logits, "visual_logits": visual_logits, "mask": mask,
                "visual": v, "textual": s}

    forward = encode_video


def alignment_loss(visual: torch.Tensor, textual: torch.Tensor, mask: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """Contrastive cross-modal alignment over a batch. Each clip's visual and textual features (B, T, d),
    zero past its length, are flattened over time and L2-normalised; P = S V^T / temperature (B, B) holds
    the similarity of clip i's visual and clip j's textual features; the positives are on the diagonal:
    L = (CE(P, diag) + CE(P^T, diag)) / 2."""
    m = mask[..., None].to(visual.dtype)
    S = F.normalize((visual * m).flatten(1), dim=-1)
    V = F.normalize((textual * m).flatten(1), dim=-1)
    P = S @ V.t() / temperature
    labels = torch.arange(P.shape[0], device=P.device)
    return 0.5 * (F.cross_entropy(P, labels) + F.cross_entropy(P.t(), labels))


def ctc_loss(logits: torch.Tensor, mask: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """CTC (blank 0) of logits (B, T, C+1): summed over each clip's alignment, averaged over clips."""
    logp = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, C+1)
    flat = torch.tensor([g for t in targets for g in t], dtype=torch.long, device=logits.device)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long, device=logits.device)
    loss = F.ctc_loss(logp, flat, mask.sum(1), target_lengths, blank=0, reduction="sum", zero_infinity=True)
    return loss / len(targets)


# --- the run folder ------------------------------------------------------------------------------

def is_recognizer_folder(path: str | Path) -> bool:
    cfg = Path(path) / CONFIG_FILE
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == RECOGNIZER_FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def save_recognizer(model: CVTSLR, folder: Path, recipe: dict[str, Any], extra: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    from slsearch.models.checkpoint import file_hash

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(folder / WEIGHTS_FILE)
    from slsearch import __version__

    (folder / CONFIG_FILE).write_text(json.dumps(
        {"format": RECOGNIZER_FORMAT, "format_version": RECOGNIZER_VERSION, "slsearch_version": __version__,
         "model": asdict(model.config), "recipe": recipe, **extra}, indent=2, ensure_ascii=False))
    model.checkpoint_hash = file_hash(folder / WEIGHTS_FILE)
    return folder


def load_recognizer(path: str | Path, device: str | torch.device = "cpu") -> CVTSLR:
    from safetensors.torch import load_file

    from slsearch.models.checkpoint import file_hash

    folder = Path(path)
    if not is_recognizer_folder(folder) or not (folder / WEIGHTS_FILE).is_file():
        raise SlsearchError(f"{folder}: not a CVT-SLR recogniser run ({CONFIG_FILE} or {WEIGHTS_FILE} missing)")
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    if cfg.get("format_version") != RECOGNIZER_VERSION:
        raise SlsearchError(f"{folder}: recogniser format version {cfg.get('format_version')} is not supported")
    try:
        model = CVTSLR(RecognizerModelConfig(**cfg["model"]))
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except (TypeError, KeyError, RuntimeError) as e:
        raise SlsearchError(f"{folder}: weights do not match the recogniser config ({str(e).splitlines()[0]})") from e
    model.checkpoint_hash = file_hash(folder / WEIGHTS_FILE)
    return model.to(device).eval()


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
