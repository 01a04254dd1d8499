"""A frozen log-mel audio front end with the interface PoolingVQ uses of MERT (`HubertModel`).

Remote code: imports only torch, numpy, transformers and its siblings.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.audio_utils import chroma_filter_bank, mel_filter_bank
from transformers.modeling_outputs import BaseModelOutput

from .configuration_poolingvq import LogMelConfig

#: Krumhansl & Kessler's key profiles (probe-tone ratings, 1982), C major and C minor, from C up by semitones.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def key_profiles() -> torch.Tensor:
    """`[12, 24]`: the 12 major then the 12 minor key profiles as columns, each z-scored (for correlations)."""
    columns = []
    for profile in (MAJOR_PROFILE, MINOR_PROFILE):
        base = torch.tensor(profile, dtype=torch.float32)
        base = (base - base.mean()) / base.std(unbiased=False)
        columns += [base.roll(tonic) for tonic in range(12)]
    return torch.stack(columns, dim=1)


def rotate_to_tonic(chroma: torch.Tensor, correlations: torch.Tensor) -> torch.Tensor:
    """`[B, T, 12]` chroma, `[B, T, 24]` key correlations -> the chroma as scale degrees: each frame rolled so that
    the tonic of its best-correlating key (major or minor) is bin 0. Transposing the music then leaves these bins
    unchanged wherever the key is found, as a listener hears a melody in any key as the same melody."""
    tonic = (
        correlations.argmax(-1) % 12
    )  # [B, T]: profiles are ordered from C up by semitones, major then minor
    degrees = (torch.arange(12, device=chroma.device) + tonic[..., None]) % 12  # [B, T, 12]
    return chroma.gather(-1, degrees)


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
        # hann_window(n) is a view of an (n + 1)-long storage: cloned, so that safetensors (a training checkpoint's
        # `load_state`) finds the buffer covering its whole storage instead of refusing it
        self.register_buffer("window", torch.hann_window(config.n_fft).clone())
        if config.num_chroma_bins:
            chroma = chroma_filter_bank(
                num_frequency_bins=config.chroma_n_fft,  # transformers (like librosa) takes n_fft here
                num_chroma=config.num_chroma_bins,
                sampling_rate=config.sampling_rate,
                power=None,  # the bins are divided by the frame's largest anyway
            )  # [chroma, F]
            self.register_buffer("chroma_filters", torch.tensor(chroma.T, dtype=torch.float32).contiguous())
            self.register_buffer("chroma_window", torch.hann_window(config.chroma_n_fft).clone())
        if getattr(config, "key_profile_seconds", 0) > 0:
            self.register_buffer("key_profiles", key_profiles())

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
            chroma = self._chroma(waveform, frames)
            modes = []
            if getattr(config, "key_profile_seconds", 0) > 0:
                correlations = self._key_correlations(chroma, real)  # [B, T, 24]
                if getattr(config, "chroma_reference", "absolute") == "key":
                    chroma = rotate_to_tonic(chroma, correlations)
                # the best major and the best minor correlation: mode, whatever the key
                modes = [torch.stack([correlations[..., :12].amax(-1), correlations[..., 12:].amax(-1)], -1)]
            parts += [chroma, *modes]
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

    def _key_correlations(self, chroma: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
        """`[B, T, 12]` chroma -> `[B, T, 24]`: Pearson's correlation of the chroma averaged over a centred window
        of `key_profile_seconds` with each of the 12 major then the 12 minor key profiles (0 where the window is
        silent)."""
        if real is not None:
            chroma = chroma * real[..., None]
        width = max(
            int(self.config.key_profile_seconds * self.config.sampling_rate / self.config.hop_length), 1
        )
        width += 1 - width % 2  # odd: centred
        smoothed = torch.nn.functional.avg_pool1d(
            chroma.transpose(1, 2), width, stride=1, padding=width // 2, count_include_pad=True
        ).transpose(1, 2)  # [B, T, 12]
        centred = smoothed - smoothed.mean(-1, keepdim=True)
        spread = centred.square().mean(-1, keepdim=True).sqrt()
        correlations = (centred / spread.clamp_min(1e-6)) @ self.key_profiles / 12  # [B, T, 24], Pearson's r
        return correlations * (spread > 1e-4)  # a silent window has no key

    @staticmethod
    def _onset_strength(log_mel: torch.Tensor) -> torch.Tensor:
        """Onsets `[B, T, M]` -> `[B, T, 1]`: the share of mel bins whose level rose by more than 4 dB (0.05 in the
        scaled log units) over the last two frames (27 ms), 0 for the first two frames.

        A share of rising bins, not the mean rise: a sustained piano sound fluctuates a little in every bin, and the
        mean rise of those fluctuations swamped the onsets (8 chords a second scored only 1.3 times 2 a second);
        with a threshold, the fluctuations drop out and the lag of two frames catches the softer attacks.
        """
        rising = (log_mel[:, 2:] - log_mel[:, :-2] > 0.05).to(log_mel.dtype).mean(-1, keepdim=True)
        return torch.nn.functional.pad(rising, (0, 0, 2, 0))


__all__ = ["LogMelEncoder"]
