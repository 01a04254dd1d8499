"""PoolingVQ for music emotion recognition: frozen encoders -> PoolingVQ -> two-stage cross-attention -> head.

Remote code: imports only torch, transformers and its siblings.

```
waveform [B, S] --MERT (HubertModel, frozen)--> frames [B, T, 768] (75/s) --PoolingVQ--> pooled audio [B, ~T/3, 768] --+
CP tokens [B, L, 4] --MIDI-BERT (frozen)------> tokens [B, L, 768] ---------------------------------------------------+
    stage 1: pooled audio queries MIDI           -> audio' [B, W, H]
    stage 2: MIDI queries audio'                 -> midi'  [B, L, H] -> masked mean [B, H] -> linear -> 4 logits
```

Training usually runs on the frozen encoders' cached features: `forward` accepts them in place of raw inputs.
`encode_audio` and `encode_midi` are the one way from model inputs to those features: the pipeline, `forward` on
raw inputs and the feature cache all call them, so training reads exactly what the pipeline computes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import HubertModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_poolingvq import PoolingVQConfig
from .files_poolingvq import PlainModeSaving
from .logmel_poolingvq import LogMelEncoder
from .midibert_poolingvq import MidiBertModel
from .performance_poolingvq import NUM_STATISTICS
from .quantization_poolingvq import PoolingVQQuantizer


@dataclass
class MusicEmotionOutput(ModelOutput):
    """Output of [`PoolingVQForMusicEmotion`].

    Args:
        loss: cross-entropy + `vq_loss_weight` * VQ loss, when `labels` are given.
        logits: `[B, num_labels]`.
        vq_loss: the VQ loss (eq. 4), 0 without PoolingVQ.
        codes: `[B, T]` code index of every audio frame (-1 on padding).
        window_rules: `[B, W]` pooling rule of every window: 0 avg, 1 weighted, 2 max (-1 on padding).
        audio_lengths: `[B]` audio frames before pooling.
        pooled_lengths: `[B]` audio windows after pooling.
        midi_lengths: `[B]` real MIDI tokens.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    vq_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    window_rules: torch.LongTensor | None = None
    audio_lengths: torch.LongTensor | None = None
    pooled_lengths: torch.LongTensor | None = None
    midi_lengths: torch.LongTensor | None = None


def masked_mean(sequence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: `[B, L, H]`, `[B, L]` -> `[B, H]`."""
    weights = mask.to(sequence.dtype)[..., None]
    return (sequence * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def features_or_encoded(
    features: torch.Tensor | None,
    features_mask: torch.Tensor | None,
    raw: torch.Tensor | None,
    raw_mask: torch.Tensor | None,
    encode: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
    needed: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One modality's `(features [B, T, D], mask [B, T])`: the cached features when given (all real when they
    come without a mask), else the encoder run on the raw input; `needed` completes the error when neither is."""
    if features is not None:
        if features_mask is None:
            features_mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return features, features_mask
    if raw is not None:
        return encode(raw, raw_mask)
    raise ValueError(f"this model reads {needed}")


class FeatureStandardization(nn.Module):
    """`(x - mean) / std` per feature, with `mean` and `std` `[D]` fitted on training frames (`fit`), not learnt.

    Unlike a LayerNorm it keeps the differences between frames in every feature, a frame's overall level among
    them. Until fitted it is the identity (mean 0, std 1).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, frames: Iterable[torch.Tensor]) -> int:
        """Set mean and std from a stream of `[T, D]` frame blocks (float64 sums); returns the frame count."""
        count, total, squares = 0, 0.0, 0.0
        for block in frames:
            block = block.detach().to("cpu", torch.float64).reshape(-1, block.shape[-1])
            count += len(block)
            total = total + block.sum(0)
            squares = squares + block.square().sum(0)
        if count == 0:
            raise ValueError("no frames to fit the audio standardization on")
        mean = total / count
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_((squares / count - mean.square()).clamp_min(1e-8).sqrt().to(self.std))
        return count

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames - self.mean.to(frames.dtype)) / self.std.to(frames.dtype)


class CrossAttentionBlock(nn.Module):
    """`query` attends to `context`; residual and LayerNorm after (post-norm, like the BERT-style encoders).

    Shapes: query `[B, Lq, H]`, context `[B, Lk, H]`, context_mask `[B, Lk]` (True on real positions) -> `[B, Lq, H]`.
    """

    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float, attention_dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(
            hidden_size, num_heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        # A context without any real position would make the softmax 0/0; let such a row attend everywhere
        # (its result is then masked out downstream) rather than produce NaN.
        context_mask = context_mask | ~context_mask.any(-1, keepdim=True)
        attended, _ = self.attention(
            query, context, context, key_padding_mask=~context_mask, need_weights=False
        )
        return self.layer_norm(query + self.dropout(attended))


class PoolingVQFusion(nn.Module):
    """The paper's two-stage fusion: pooled audio queries MIDI, then MIDI queries that result.

    Stage 1 lets every pooled audio window gather the notes that explain it; stage 2 reads the piece in the MIDI's
    own order, each token asking the note-aware audio what it sounded like. The stage-2 sequence is averaged over
    real tokens into one vector per piece; with `fusion_readout="both"` the stage-1 sequence, averaged over real
    windows, is concatenated to it (see [`PoolingVQConfig`] for why).

    Each modality is layer-normalised, then projected to `fusion_hidden_size`. The encoders differ in scale
    (MERT's averaged hidden states, MIDI-BERT's output, log-mel frames near 0.7 with a spread of 0.07 between
    clips), and without the norm the projections learn the shared level, not the differences: an audio-only
    log-mel model stayed at chance on EMOPIA, where a logistic probe on the same features did clearly better.

    For the single-modality ablations only that modality's projection is built and averaged.

    With `midi_statistics` (see [`PoolingVQConfig`]) the MIDI's performance statistics `[B, S]`, standardized and
    projected to the fusion's width, are concatenated to that vector: the head reads velocity and tempo directly,
    which no cross-attention over CP tokens can give it.

    With `modality_dropout` (see [`PoolingVQConfig`]) a hidden or missing modality becomes one learned "absent"
    token (`absent_audio`, `absent_midi`, in the fusion's width): the cross-attentions run unchanged, the other
    side attending to that single token, so one set of weights answers for both, audio alone and MIDI alone.
    """

    def __init__(self, config: PoolingVQConfig) -> None:
        super().__init__()
        hidden = config.fusion_hidden_size
        self.modalities = config.modalities
        self.readout = config.fusion_readout
        if self.uses_audio:
            audio_size = config.audio_config.hidden_size
            self.audio_projection = nn.Sequential(
                FeatureStandardization(audio_size)
                if config.audio_normalization == "standardize"
                else nn.LayerNorm(audio_size),
                nn.Linear(audio_size, hidden),
            )
        if self.uses_midi:
            self.midi_projection = nn.Sequential(
                nn.LayerNorm(config.midi_config.hidden_size),
                nn.Linear(config.midi_config.hidden_size, hidden),
            )
        if self.uses_audio and self.uses_midi:
            self.audio_queries_midi = CrossAttentionBlock(
                hidden, config.fusion_num_heads, config.fusion_dropout, config.fusion_attention_dropout
            )
            self.midi_queries_audio = CrossAttentionBlock(
                hidden, config.fusion_num_heads, config.fusion_dropout, config.fusion_attention_dropout
            )
        if config.reads_midi_statistics:
            self.statistics_projection = nn.Sequential(
                FeatureStandardization(NUM_STATISTICS), nn.Linear(NUM_STATISTICS, hidden)
            )
        if config.accepts_missing_modality:
            self.absent_audio = nn.Parameter(torch.zeros(hidden))
            self.absent_midi = nn.Parameter(torch.zeros(hidden))

    @property
    def uses_audio(self) -> bool:
        return self.modalities in ("audio+midi", "audio")

    @property
    def uses_midi(self) -> bool:
        return self.modalities in ("audio+midi", "midi")

    def forward(
        self,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
        midi: torch.Tensor | None,
        midi_mask: torch.Tensor | None,
        hide_audio: torch.Tensor | None = None,
        hide_midi: torch.Tensor | None = None,
        statistics: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """audio `[B, W, Da]` + mask `[B, W]`, midi `[B, L, Dm]` + mask `[B, L]` (+ the MIDI's performance
        `statistics` `[B, S]` with `midi_statistics`) -> one vector per piece `[B, config.fused_size]` (H, or 2H for
        the `"both"` readout, + H for the statistics).

        With absent tokens (`modality_dropout`), `audio` or `midi` may be None (missing for the whole batch), and
        `hide_audio` / `hide_midi` `[B]` (bool) hide that modality of the pieces marked True.
        """
        piece = self._fuse_sequences(audio, audio_mask, midi, midi_mask, hide_audio, hide_midi)
        if not hasattr(self, "statistics_projection"):
            return piece
        return torch.cat(
            [piece, self._statistics_or_absent(statistics, midi is not None, hide_midi, piece)], -1
        )

    def _statistics_or_absent(
        self,
        statistics: torch.Tensor | None,
        has_midi: bool,
        hide_midi: torch.Tensor | None,
        piece: torch.Tensor,
    ) -> torch.Tensor:
        """The projected statistics `[B, H]`; the absent MIDI token where the MIDI is missing or hidden."""
        if not has_midi:
            return self.absent_midi.to(piece.dtype).expand(piece.shape[0], -1)
        if statistics is None:
            raise ValueError("this model reads the MIDI's performance statistics: pass `midi_statistics`")
        standardize, project = self.statistics_projection
        # NaN marks a statistic the MIDI cannot know (one transcribed from a recording has no velocities): read as
        # the training clips' mean, 0 once standardized
        projected = project(standardize(statistics.to(piece.dtype)).nan_to_num(nan=0.0))
        if hide_midi is None:
            return projected
        return torch.where(hide_midi[:, None], self.absent_midi.to(piece.dtype), projected)

    def _fuse_sequences(
        self,
        audio: torch.Tensor | None,
        audio_mask: torch.Tensor | None,
        midi: torch.Tensor | None,
        midi_mask: torch.Tensor | None,
        hide_audio: torch.Tensor | None,
        hide_midi: torch.Tensor | None,
    ) -> torch.Tensor:
        """The two sequences -> `[B, H]` (`[B, 2H]` for the `"both"` readout): the paper's fusion."""
        if self.modalities == "audio":
            return masked_mean(self.audio_projection(audio), audio_mask)
        if self.modalities == "midi":
            return masked_mean(self.midi_projection(midi), midi_mask)
        batch = (audio if audio is not None else midi).shape[0]
        if audio is None or midi is None:
            if not hasattr(self, "absent_audio"):
                raise ValueError(
                    "this model needs both audio and MIDI (it was trained without modality_dropout)"
                )
        audio, audio_mask = self._project_or_absent(audio, audio_mask, hide_audio, batch, "audio")
        midi, midi_mask = self._project_or_absent(midi, midi_mask, hide_midi, batch, "midi")
        audio_with_notes = self.audio_queries_midi(audio, midi, midi_mask)  # [B, W, H]
        midi_with_sound = self.midi_queries_audio(midi, audio_with_notes, audio_mask)  # [B, L, H]
        piece = masked_mean(midi_with_sound, midi_mask)
        if self.readout == "both":
            piece = torch.cat([masked_mean(audio_with_notes, audio_mask), piece], dim=-1)  # [B, 2H]
        return piece

    def _project_or_absent(
        self,
        sequence: torch.Tensor | None,
        mask: torch.Tensor | None,
        hide: torch.Tensor | None,
        batch: int,
        modality: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One modality projected to the fusion's width, `[B, L, H]` + mask `[B, L]`; a missing modality is the
        absent token alone (`[B, 1, H]`), and the pieces marked in `hide` `[B]` keep only the absent token, in
        their first position (the rest masked), so the batch keeps one shape."""
        projection = self.audio_projection if modality == "audio" else self.midi_projection
        if sequence is None:
            absent = getattr(self, f"absent_{modality}")
            device = absent.device
            return absent.expand(batch, 1, -1), torch.ones(batch, 1, dtype=torch.bool, device=device)
        sequence = projection(sequence)
        if hide is None or not hasattr(self, f"absent_{modality}"):
            return sequence, mask
        first = torch.arange(sequence.shape[1], device=sequence.device) == 0  # [L]
        replace = hide[:, None] & first[None, :]  # [B, L]
        sequence = torch.where(
            replace[..., None], getattr(self, f"absent_{modality}").to(sequence.dtype), sequence
        )
        mask = torch.where(hide[:, None], first[None, :], mask)
        return sequence, mask


class PoolingVQPreTrainedModel(PlainModeSaving, PreTrainedModel):
    config_class = PoolingVQConfig
    base_model_prefix = "poolingvq"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, PoolingVQQuantizer):
            # Unit-variance directions until k-means replaces them (`initialized` says whether it has).
            init.normal_(module.codebook, mean=0.0, std=1.0)
            init.zeros_(module.initialized)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, PoolingVQFusion) and hasattr(module, "absent_audio"):
            init.normal_(module.absent_audio, mean=0.0, std=0.02)
            init.normal_(module.absent_midi, mean=0.0, std=0.02)

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus what `pipeline("music-emotion", model=folder,
        trust_remote_code=True)` needs: the audio-classification auto class and the pipeline with its code."""
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModelForAudioClassification", "modeling_poolingvq.PoolingVQForMusicEmotion")
        self.config.auto_map = auto_map
        pipeline_file = Path(__file__).with_name("pipeline_music_emotion.py")
        if pipeline_file.exists():  # absent only when re-saving a model that was loaded as remote code
            self.config.custom_pipelines = {
                "music-emotion": {
                    "impl": "pipeline_music_emotion.MusicEmotionPipeline",
                    "pt": ["AutoModelForAudioClassification"],
                    "tf": [],
                    "type": "multimodal",
                }
            }
        super().save_pretrained(save_directory, *args, **kwargs)
        if pipeline_file.exists():
            shutil.copyfile(pipeline_file, Path(save_directory) / pipeline_file.name)


class PoolingVQForMusicEmotion(PoolingVQPreTrainedModel):
    """PoolingVQ: audio + MIDI -> four Russell quadrants (Q1 happy, Q2 tense, Q3 sad, Q4 calm).

    Attributes:
        audio_encoder: a transformers `HubertModel` holding MERT-v1-95M (frozen by default), or a
            [`LogMelEncoder`] when `config.audio_config` is a [`LogMelConfig`] (no downloaded weights).
        midi_encoder: [`MidiBertModel`] (frozen by default; trained with the head when
            `config.finetune_midi_encoder`).
        quantizer: [`PoolingVQQuantizer`] (None in the MIDI-only ablation).
        fusion: [`PoolingVQFusion`].
        classifier: dropout + the fully connected head, `config.fused_size -> num_labels`.
    """

    def __init__(self, config: PoolingVQConfig) -> None:
        super().__init__(config)
        if config.audio_encoder_kind == "logmel":
            self.audio_encoder = LogMelEncoder(config.audio_config)
        else:
            self.audio_encoder = HubertModel(config.audio_config)
        self.midi_encoder = MidiBertModel(config.midi_config)
        self.quantizer = None
        if config.modalities != "midi":
            self.quantizer = PoolingVQQuantizer(
                dim=config.audio_config.hidden_size,
                codebook_size=config.codebook_size,
                window_size=config.window_size,
                window_stride=config.window_stride,
                avg_max_distinct_codes=config.avg_max_distinct_codes,
                weighted_max_distinct_codes=config.weighted_max_distinct_codes,
                weighted_pooling=config.weighted_pooling,
                commitment_weight=config.commitment_weight,
                pooling=config.pooling,
                fused_pooling=config.fused_pooling,
            )
        self.fusion = PoolingVQFusion(config)
        self.classifier = nn.Sequential(
            nn.Dropout(config.classifier_dropout), nn.Linear(config.fused_size, config.num_labels)
        )
        if config.freeze_encoders:
            self.audio_encoder.requires_grad_(False)
            if not config.finetune_midi_encoder:
                self.midi_encoder.requires_grad_(False)
        self.post_init()

    def train(self, mode: bool = True) -> PoolingVQForMusicEmotion:
        """Frozen encoders stay in eval mode (no dropout, no spec-augment), whatever the rest does; a fine-tuned
        MIDI encoder (`config.finetune_midi_encoder`) follows `mode`."""
        super().train(mode)
        if self.config.freeze_encoders:
            self.audio_encoder.eval()
            if not self.config.finetune_midi_encoder:
                self.midi_encoder.eval()
        return self

    def _encoder_grad(self, encoder: str) -> bool:
        """Whether `encoder` (`"audio"` or `"midi"`) runs with gradients: never when they are off, else when it is
        not frozen (`freeze_encoders=False`, or the MIDI encoder with `finetune_midi_encoder`)."""
        trained = not self.config.freeze_encoders or (encoder == "midi" and self.config.finetune_midi_encoder)
        return torch.is_grad_enabled() and trained

    def get_audio_features(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio features PoolingVQ reads: the mean of `config.audio_feature_layers` hidden states.

        Args:
            input_values: `[B, S]` normalised 24 kHz waveform (from `PoolingVQFeatureExtractor`).
            attention_mask: `[B, S]`, 1 on real samples.
        Returns:
            features `[B, T, D]` (T = frames at 75/s) and their mask `[B, T]` (bool).
        """
        with torch.set_grad_enabled(self._encoder_grad("audio")):
            out = self.audio_encoder(input_values, attention_mask=attention_mask, output_hidden_states=True)
        hidden_states = out.hidden_states
        layers = self.config.audio_feature_layers
        layers = range(len(hidden_states)) if layers is None else layers
        # A running sum, not a stack: 13 layers x 60 s of frames would otherwise be copied once more.
        features = sum(hidden_states[i] for i in layers) / len(layers)
        frames = features.shape[1]
        if attention_mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        else:
            mask = self.audio_encoder._get_feature_vector_attention_mask(frames, attention_mask).bool()
        return features, mask

    def get_midi_features(
        self, midi_input_ids: torch.Tensor, midi_attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The MIDI features the fusion reads: MIDI-BERT hidden state `config.midi_feature_layer`.

        Args:
            midi_input_ids: `[B, L, 4]` CP tokens.
            midi_attention_mask: `[B, L]`, 1 on real tokens (default: Bar != PAD).
        Returns:
            features `[B, L, D]` and their mask `[B, L]` (bool).
        """
        if midi_attention_mask is None:
            midi_attention_mask = midi_input_ids[..., 0] != self.config.midi_config.cp_pad_token[0]
        layer = self.config.midi_feature_layer
        with torch.set_grad_enabled(self._encoder_grad("midi")):
            out = self.midi_encoder(
                midi_input_ids, attention_mask=midi_attention_mask, output_hidden_states=layer != -1
            )
        features = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        return features, midi_attention_mask.bool()

    def encode_audio(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The audio features of a padded batch of waveforms, each clip's as if it had been encoded alone.

        The one path from waveforms to audio features (pipeline, `forward`, feature cache). When padding would
        change the features (`config.audio_padding_changes_features`: MERT's group-normalised conv front end
        normalises over the whole padded input) only clips of exactly the same length share an encoder pass,
        unpadded (one pass in all when every clip is cropped to the same 60 s), and the features are padded
        afterwards; otherwise (log-mel) the batch is encoded as it is, in one pass.

        Args:
            input_values: `[B, S]` waveforms at the encoder's rate, right-padded (`PoolingVQFeatureExtractor`).
            attention_mask: `[B, S]`, 1 on real samples (default: all real).
        Returns:
            features `[B, T, D]` and their mask `[B, T]` (bool).
        """
        input_values = input_values.to(self.device, dtype=self.dtype)
        if attention_mask is None:
            attention_mask = torch.ones(input_values.shape, dtype=torch.long, device=self.device)
        attention_mask = attention_mask.to(self.device)
        if not self.config.audio_padding_changes_features:
            return self.get_audio_features(input_values, attention_mask)
        lengths = attention_mask.sum(-1)
        groups = [(int(length), (lengths == length).nonzero()[:, 0]) for length in lengths.unique()]
        encoded = [
            self.get_audio_features(input_values[index, :length], attention_mask[index, :length])
            for length, index in groups
        ]
        frames = max(group_features.shape[1] for group_features, _ in encoded)
        first = encoded[0][0]
        features = first.new_zeros(input_values.shape[0], frames, first.shape[-1])
        features_mask = torch.zeros(input_values.shape[0], frames, dtype=torch.bool, device=first.device)
        for (_, index), (group_features, group_mask) in zip(groups, encoded, strict=True):
            features[index, : group_features.shape[1]] = group_features
            features_mask[index, : group_mask.shape[1]] = group_mask
        return features, features_mask

    def encode_midi(
        self,
        midi_input_ids: torch.Tensor,
        midi_attention_mask: torch.Tensor | None = None,
        row_length: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The MIDI features of each piece's tokens, read by MIDI-BERT in rows of `row_length` tokens.

        The one way MIDI rows are taken (pipeline, `forward`, feature cache). MIDI-BERT reads at most 512 tokens at
        a time (its relative positions span no more), while the fusion reads one sequence per piece: a piece's
        tokens `[L, 4]`, real ones first (a long piece's kept rows one after another, as the processor and the
        cache give them), are cut into rows of `row_length`, every row holding a real token is encoded (all in one
        pass, cut to the longest real row: padding is masked and positions are relative, so the cut changes only
        the cost), and the rows' features are put back in place. A piece of one row is read as it always was.

        Args:
            midi_input_ids: `[B, L, 4]` CP tokens, real tokens first.
            midi_attention_mask: `[B, L]`, 1 on real tokens (default: Bar != PAD).
            row_length: tokens per MIDI-BERT row (default `config.max_midi_tokens`, the tokenizer's row length).
        Returns:
            features `[B, L, D]` (zero on padding) and their mask `[B, L]` (bool).
        """
        pad = torch.tensor(self.config.midi_config.cp_pad_token, device=self.device)
        midi_input_ids = midi_input_ids.to(self.device)
        if midi_attention_mask is None:
            midi_attention_mask = midi_input_ids[..., 0] != pad[0]
        mask = midi_attention_mask.to(self.device).bool()
        row_length = row_length or self.config.max_midi_tokens
        batch, length = mask.shape
        rows = -(-length // row_length)
        # padding positions hold the pad token, whatever the caller padded with (the pipeline's collation pads
        # with 0): masked, they change nothing, and the rows are then the exact tensors the tokenizer gave
        ids = torch.where(mask[..., None], midi_input_ids, pad)
        extra = rows * row_length - length
        ids = torch.cat([ids, pad.expand(batch, extra, 4)], dim=1).reshape(batch * rows, row_length, 4)
        row_mask = torch.cat([mask, mask.new_zeros(batch, extra)], dim=1).reshape(batch * rows, row_length)
        used = row_mask.any(-1).nonzero()[:, 0]
        longest = max(int(row_mask[used].sum(-1).max()), 1) if len(used) else 1
        encoded, _ = self.get_midi_features(ids[used, :longest], row_mask[used, :longest])
        features = encoded.new_zeros(batch * rows, row_length, encoded.shape[-1])
        features[used, :longest] = encoded * row_mask[used, :longest, None]
        features = features.reshape(batch, rows * row_length, -1)[:, :length]
        return features, mask

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        midi_input_ids: torch.Tensor | None = None,
        midi_attention_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_features_mask: torch.Tensor | None = None,
        midi_features: torch.Tensor | None = None,
        midi_features_mask: torch.Tensor | None = None,
        midi_statistics: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MusicEmotionOutput | tuple:
        """Classify pieces from raw inputs or from the encoders' cached features.

        Args:
            input_values: `[B, S]` 24 kHz waveform, with `attention_mask` `[B, S]`.
            midi_input_ids: `[B, L, 4]` CP tokens, with `midi_attention_mask` `[B, L]`.
            audio_features: `[B, T, D]` precomputed by `encode_audio` (replaces `input_values`), with
                `audio_features_mask` `[B, T]`.
            midi_features: `[B, L, D]` precomputed by `encode_midi`, with `midi_features_mask` `[B, L]`.
            midi_statistics: `[B, S]` the MIDI's performance statistics (`performance_statistics`; the processor
                gives them), read when `config.midi_statistics`, with the MIDI. NaN marks one the MIDI cannot know
                (a transcription's velocities): it is read as the training clips' mean.
            labels: `[B]` quadrant indices 0..3.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        audio = audio_mask = midi = midi_mask = None
        if self.config.accepts_missing_modality:
            has_audio = input_values is not None or audio_features is not None
            has_midi = midi_input_ids is not None or midi_features is not None
            if not (has_audio or has_midi):
                raise ValueError("pass audio (`input_values` / `audio_features`), MIDI, or both")
        else:
            has_audio, has_midi = self.fusion.uses_audio, self.fusion.uses_midi
        if self.fusion.uses_audio and has_audio:
            audio, audio_mask = features_or_encoded(
                audio_features, audio_features_mask, input_values, attention_mask, self.encode_audio,
                "audio: pass `input_values` (a waveform) or `audio_features`",
            )  # fmt: skip
        if self.fusion.uses_midi and has_midi:
            midi, midi_mask = features_or_encoded(
                midi_features, midi_features_mask, midi_input_ids, midi_attention_mask, self.encode_midi,
                "MIDI: pass `midi_input_ids` (CP tokens) or `midi_features`",
            )  # fmt: skip

        codes = window_rules = pooled_lengths = audio_lengths = None
        vq_loss = None
        if audio is not None:
            audio = audio.to(self.dtype)
            audio_mask = audio_mask.bool()
            audio_lengths = audio_mask.sum(-1)
            quantized = self.quantizer(audio, audio_mask)
            audio, audio_mask = quantized.pooled, quantized.pooled_mask
            codes, window_rules, vq_loss = quantized.codes, quantized.window_rules, quantized.vq_loss
            pooled_lengths = quantized.pooled_lengths
        if midi is not None:
            midi = midi.to(self.dtype)
            midi_mask = midi_mask.bool()
        if vq_loss is None:
            vq_loss = torch.zeros((), device=self.device, dtype=self.dtype)

        hide_audio = hide_midi = None
        if self.training and self.config.accepts_missing_modality and audio is not None and midi is not None:
            # one draw per piece: hide the audio with probability p (1 - s), else the MIDI with probability p s
            # (p = modality_dropout, s = modality_dropout_midi_share; s = 0.5: p/2 each)
            draw = torch.rand(audio.shape[0], device=audio.device)
            hide_audio_below = self.config.modality_dropout * (1 - self.config.modality_dropout_midi_share)
            hide_audio = draw < hide_audio_below
            hide_midi = (draw >= hide_audio_below) & (draw < self.config.modality_dropout)
        piece = self.fusion(audio, audio_mask, midi, midi_mask, hide_audio, hide_midi, midi_statistics)
        logits = self.classifier(piece)
        loss = None
        if labels is not None:
            loss = (
                F.cross_entropy(logits.float(), labels.to(logits.device))
                + self.config.vq_loss_weight * vq_loss
            )
        output = MusicEmotionOutput(
            loss=loss,
            logits=logits,
            vq_loss=vq_loss,
            codes=codes,
            window_rules=window_rules,
            audio_lengths=audio_lengths,
            pooled_lengths=pooled_lengths,
            midi_lengths=None if midi_mask is None else midi_mask.sum(-1),
        )
        return output if return_dict else output.to_tuple()


PoolingVQConfig.register_for_auto_class()
PoolingVQForMusicEmotion.register_for_auto_class("AutoModel")

__all__ = [
    "FeatureStandardization",
    "MusicEmotionOutput",
    "PoolingVQForMusicEmotion",
    "PoolingVQFusion",
    "PoolingVQPreTrainedModel",
]
