"""SignTextModel: video tower + text tower + C²RL decoder, and its config.

`forward` returns a dict whose keys are the argument names of `C2RLLoss`, so a training step is
`losses = loss_fn(**model(**batch))`. Encoding for search goes through `slsearch.encode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import MBartConfig

from slsearch.data.features import FEATURE_DIM
from slsearch.models.decoder import TextDecoder, decoder_config, shift_for_lm
from slsearch.models.text_tower import TextTower, scratch_text_config
from slsearch.models.tokenizer import TextTokenizer
from slsearch.models.video_tower import TEMPORAL_STRIDE, VideoTower, make_front_end


@dataclass
class ModelConfig:
    front_end: str = "pose"  # what turns frames into vectors: the pose front end (the only one yet)
    # DVE-SLT's visual streams (slsearch.models.video_tower.STREAMS): "pose" per frame, "pose_windows"
    # spatio-temporal over 16-frame windows, "rgb_crops" a CNN over each frame's hand and face crops (videos
    # only; clips without video are masked); more than one: each aligned with the text and with the others
    streams: list[str] = field(default_factory=lambda: ["pose"])
    fusion: str = "concat"  # of several streams: concat (projected), sum or cross (attention)
    stream_window: int = 16  # frames per window of the pose_windows stream
    stream_stride: int = 6  # frames between its windows
    input_dim: int = FEATURE_DIM  # per-frame feature width the front end reads
    video_dim: int = 256  # width of the video tower's conv and transformer
    video_layers: int = 2  # transformer layers over the T/4 tokens
    video_heads: int = 4
    video_ffn: int = 1024
    conv_kernel: int = 5  # temporal receptive field of each conv block, in frames
    dropout: float = 0.1
    token_dim: int = 256  # d: width of token states of both towers (CiCo score, decoder memory)
    embed_dim: int = 256  # D: width of the global vectors that go into FAISS
    text_dim: int = 256  # scratch mBART encoder width (ignored when text_mbart is set)
    text_layers: int = 2
    text_heads: int = 4
    text_ffn: int = 1024
    max_text_tokens: int = 64  # sentences are cut to this many tokens
    decoder_layers: int = 3  # C²RL: a 3-layer mBART decoder
    decoder_heads: int = 4
    decoder_ffn: int = 1024
    vocab_size: int = 0  # filled in from the tokenizer
    cico_temperature: float = 0.07  # tau' of the CiCo softmax
    init_logit_scale: float = 2.659  # ln(1/0.07), CLIP's start for both learnable scales
    # gloss vocabulary of the training manifest when the recipe trains the gloss CTC head (loss.gloss_weight);
    # None = no head
    glosses: list[str] | None = None
    text_mbart: dict[str, Any] | None = None  # MBartConfig of a pretrained text encoder, when one is used
    text_model_source: str | None = None  # where that pretrained encoder came from (for the record)
    # Share of the LM loss's sentences that the decoder reads with a learnt "null clip" instead of their
    # video: it then also models p(sentence), the prior that V2T re-ranking by likelihood divides out.
    # > 0 adds the null token to the model.
    lm_prior_rate: float = 0.0

    def text_config(self) -> MBartConfig:
        if self.text_mbart is not None:
            cfg = MBartConfig(**self.text_mbart)
            cfg.vocab_size = self.vocab_size
            return cfg
        return scratch_text_config(self.vocab_size, self.text_dim, self.text_layers, self.text_heads,
                                   self.text_ffn, self.dropout, max_positions=self.max_text_tokens + 4)


class SignTextModel(nn.Module):
    temporal_stride = TEMPORAL_STRIDE

    def __init__(self, config: ModelConfig, tokenizer: TextTokenizer):
        super().__init__()
        if config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"config vocab_size {config.vocab_size} != tokenizer's {tokenizer.vocab_size}")
        self.config = config
        self.tokenizer = tokenizer
        self.video = build_video_tower(config)
        self.text = TextTower(config.text_config(), config.token_dim, config.embed_dim)
        self.decoder = TextDecoder(decoder_config(config.vocab_size, config.token_dim, config.decoder_layers,
                                                  config.decoder_heads, config.decoder_ffn, config.dropout,
                                                  max_positions=config.max_text_tokens + 4))
        self.null_video = (nn.Parameter(torch.randn(1, 1, config.token_dim) * 0.02)
                           if config.lm_prior_rate > 0 else None)
        self.logit_scale_fine = nn.Parameter(torch.tensor(config.init_logit_scale))
        self.logit_scale_global = nn.Parameter(torch.tensor(config.init_logit_scale))
        self.checkpoint_hash = "untrained"  # names the weights: set by save_model / load_model

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def token_dim(self) -> int:
        return self.config.token_dim

    @property
    def device(self) -> torch.device:
        return self.logit_scale_fine.device

    def encode_video(self, features: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.video(features, lengths)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.text(input_ids, attention_mask)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, with_lm: bool = True, with_text: bool = True) -> dict[str, torch.Tensor]:
        """features (B, T, F), lengths (B,), input_ids/attention_mask (B, L) -> the loss's arguments.

        with_text=False skips the text tower (the translate stage has no contrastive loss)."""
        v = self.video(features, lengths)
        out = {"video_tokens": v["tokens"], "video_mask": v["mask"], "video_global": v["global"]}
        if with_text:
            t = self.text(input_ids, attention_mask)
            out.update({"text_tokens": t["tokens"], "text_mask": t["mask"], "text_global": t["global"],
                        "logit_scale_fine": self.logit_scale_fine, "logit_scale_global": self.logit_scale_global})
            if "streams" in v:  # DVE-SLT: each stream's own alignment with the text and with the others
                out["stream_tokens"] = [st["tokens"] for st in v["streams"]]
                out["stream_globals"] = [st["global"] for st in v["streams"]]
        if "gloss_logits" in v:
            out["gloss_logits"] = v["gloss_logits"]
        if with_lm:
            dec_in, dec_mask, labels = shift_for_lm(input_ids, attention_mask, self.tokenizer.bos_id,
                                                    self.tokenizer.pad_id)
            memory, memory_mask = v["tokens"], v["mask"]
            # joint training only: the translate stage (with_text=False) learns from every clip's video
            if self.training and with_text and self.null_video is not None:
                nulls = torch.rand(memory.shape[0], device=memory.device) < self.config.lm_prior_rate
                null_mem, null_mask = self.null_memory(memory.shape[0], memory.shape[1])
                memory = torch.where(nulls[:, None, None], null_mem.to(memory.dtype), memory)
                memory_mask = torch.where(nulls[:, None], null_mask, memory_mask)
            out["lm_logits"] = self.decoder(memory, memory_mask, dec_in, dec_mask)  # (B, L, vocab)
            out["lm_labels"] = labels
        return out

    def null_memory(self, batch: int, length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder memory of the null clip, (batch, length, d) with only the first step valid: reading
        it the decoder scores p(sentence) alone."""
        if self.null_video is None:
            raise ValueError("this model was trained without a sentence prior (model.lm_prior_rate = 0)")
        memory = torch.zeros(batch, length, self.config.token_dim, device=self.device)
        memory[:, 0] = self.null_video[0, 0]
        mask = torch.zeros(batch, length, dtype=torch.bool, device=self.device)
        mask[:, 0] = True
        return memory, mask


def build_video_tower(config: ModelConfig) -> VideoTower:
    """The video tower a config describes: its streams' front ends, the shared encoder, the gloss head."""
    front, *more = [make_front_end(s, config.video_dim, config.input_dim, config.dropout, config.stream_window,
                                   config.stream_stride) for s in config.streams]
    return VideoTower(front, config.video_dim, config.conv_kernel, config.video_layers, config.video_heads,
                      config.video_ffn, config.dropout, config.token_dim, config.embed_dim,
                      gloss_classes=len(config.glosses or []), more_streams=more, fusion=config.fusion)


def build_model(config: ModelConfig, tokenizer: TextTokenizer) -> SignTextModel:
    config.vocab_size = tokenizer.vocab_size
    config.max_text_tokens = tokenizer.max_length
    return SignTextModel(config, tokenizer)


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    known = set(ModelConfig.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise KeyError(f"unknown model config keys: {', '.join(sorted(unknown))}")
    return ModelConfig(**d)
