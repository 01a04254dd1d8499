"""A frozen log-mel audio front end with the interface PoolingVQ uses of MERT (`HubertModel`).

Remote code: imports only torch, numpy, transformers and its siblings.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.audio_utils import chroma_filter_bank, mel_filter_bank
from transformers.modeling_outputs import BaseModelOutput

from .configuration_poolingvq import LogMelConfig


class LogMelEncoder(nn.Module):
    """Waveform `[B, S]` -> frames `[B, T, hidden_size]` at `sampling_rate / hop_length` frames/s: log-mel,
    then (when configured) chroma and onset strength; see [`LogMelConfig`] for what each part is for.

    Stands where MERT stands: `forward(input_values, attention_mask, output_hidden_states)` returns a
    `BaseModelOutput` whose `hidden_states` is the one "layer" of log-mel frames, and
    `_get_feature_vector_attention_mask` maps a sample mask to a frame mask. No trainable weights. The window and
    the filter bank are saved with the model although the config determines them: transformers builds a model on
    the meta device before loading it, and buffers that are not in the checkpoint would stay uninitialised.
    """

    def __init__(self, config: LogMelConfig) -> None:
        super().__init__()
        self.config = config
        filters = mel_filter_bank(
            num_frequency_bins=config.n_fft // 2 + 1,
            num_mel_filters=config.num_mel_bins,
            min_frequency=config.min_frequency,
            max_frequency=config.max_frequency,
            sampling_rate=config.sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_filters", torch.tensor(filters, dtype=torch.float32))
        self.register_buffer("window", torch.hann_window(config.n_fft))
        if config.num_chroma_bins:
            chroma = chroma_filter_bank(
                num_frequency_bins=config.chroma_n_fft,  # transformers (like librosa) takes n_fft here
                num_chroma=config.num_chroma_bins,
                sampling_rate=config.sampling_rate,
                power=None,  # the bins are divided by the frame's largest anyway
            )  # [chroma, F]
            self.register_buffer("chroma_filters", torch.tensor(chroma.T, dtype=torch.float32).contiguous())
            self.register_buffer("chroma_window", torch.hann_window(config.chroma_n_fft))

    def num_frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Frames of a centred STFT over `samples` samples: one per hop, plus one."""
        return torch.div(samples, self.config.hop_length, rounding_mode="floor") + 1

    def _get_feature_vector_attention_mask(self, frames: int, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = self.num_frames(attention_mask.sum(-1)).clamp(max=frames)
        return torch.arange(frames, device=attention_mask.device)[None, :] < lengths[:, None]

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = True,
        **kwargs: object,
    ) -> BaseModelOutput:
        config = self.config
        waveform = input_values.float()
        if attention_mask is not None:  # padding must not leak into the last real frames
            waveform = waveform * attention_mask.to(waveform.dtype)
        spectrum = torch.stft(
            waveform,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            window=self.window,
            center=True,
            # zeros, not reflection, beyond the ends: a clip then gets the same frames alone as zero-padded in a
            # batch, so clips of any lengths can share a forward pass
            pad_mode="constant",
            return_complex=True,
        ).abs()  # [B, F, T]
        mel = spectrum.transpose(1, 2) @ self.mel_filters  # [B, T, F] @ [F, M] -> [B, T, M]
        log_mel = mel.clamp_min(1e-10).log10()
        frames = log_mel.shape[1]
        real = None
        if attention_mask is not None:
            real = self._get_feature_vector_attention_mask(frames, attention_mask)
        if config.level == "absolute":  # a fixed full-scale reference: louder music gives larger frames
            peak = torch.full_like(log_mel[:, :1, :1], config.absolute_peak)
        elif real is not None:  # each clip's dynamic range, counted from its own loudest real frame (Whisper)
            peak = log_mel.masked_fill(~real[..., None], float("-inf")).amax(dim=(1, 2), keepdim=True)
        else:
            peak = log_mel.amax(dim=(1, 2), keepdim=True)
        log_mel = (torch.maximum(log_mel, peak - config.dynamic_range) + 4.0) / 4.0
        parts = [log_mel]
        if config.num_chroma_bins:
            parts.append(self._chroma(waveform, frames))
        if config.onset_strength:
            parts.append(self._onset_strength(log_mel))
        log_mel = torch.cat(parts, dim=-1) if len(parts) > 1 else log_mel
        if real is not None:
            log_mel = log_mel * real[..., None]
        log_mel = log_mel.to(input_values.dtype)
        return BaseModelOutput(
            last_hidden_state=log_mel, hidden_states=(log_mel,) if output_hidden_states else None
        )

    def _chroma(self, waveform: torch.Tensor, frames: int) -> torch.Tensor:
        """`[B, S]` -> `[B, T, num_chroma_bins]`, each frame divided by its largest bin (0 on silence)."""
        spectrum = torch.stft(
            waveform,
            n_fft=self.config.chroma_n_fft,
            hop_length=self.config.hop_length,
            window=self.chroma_window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        ).abs()  # [B, F, T]: the same frame centres as the mel's STFT
        chroma = spectrum.transpose(1, 2)[:, :frames] @ self.chroma_filters  # [B, T, chroma]
        return chroma / chroma.amax(-1, keepdim=True).clamp_min(1e-6)

    @staticmethod
    def _onset_strength(log_mel: torch.Tensor) -> torch.Tensor:
        """Spectral flux `[B, T, M]` -> `[B, T, 1]`: the mean positive rise of each mel bin since the previous
        frame (0 for the first frame), x 10 so that a note onset is O(1) like the other channels."""
        rise = (log_mel[:, 1:] - log_mel[:, :-1]).clamp_min(0.0).mean(-1, keepdim=True)
        return torch.nn.functional.pad(rise, (0, 0, 1, 0)) * 10.0


__all__ = ["LogMelEncoder"]
