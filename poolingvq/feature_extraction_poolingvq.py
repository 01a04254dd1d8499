"""Audio front end of PoolingVQ: load any audio input as 24 kHz mono, and MERT's feature extractor.

Remote code: copied flat into every saved model folder; imports only numpy, torch, transformers, soundfile,
soxr and its own siblings.

`load_audio` turns a path, bytes, a numpy array or a torch tensor into a float32 [T] mono waveform at the
encoder's rate, cropped to the paper's 60 s; every problem with the input raises `PoolingVQInputError`.
`PoolingVQFeatureExtractor` batches such waveforms the way MERT's own feature extractor (transformers'
`Wav2Vec2FeatureExtractor` at 24 kHz) does: per-example zero mean / unit variance, right padding with zeros,
and an attention mask.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr
import torch
from transformers import BatchFeature
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.utils import logging

from .errors_poolingvq import PoolingVQInputError

logger = logging.get_logger(__name__)

#: Sampling rates outside this range are a broken header or a wrong argument, not real audio.
MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 384_000
#: Most channels an array may have. A 2-D array does not say which axis is time; its smaller dimension is
#: taken as the channels only when it is at most 8 (7.1 surround), so a [T, C] or [C, T] clip is read either
#: way while a batch [B, T] of more than 8 clips is refused instead of being silently mixed into one clip.
MAX_ARRAY_CHANNELS = 8
#: Most channels a file may have: its header says which axis is which, so only absurd counts are refused
#: (64 is 7th-order ambisonics).
MAX_FILE_CHANNELS = 64
#: A clip whose peak stays below -120 dBFS is silent: that is far under the least significant bit of 16-bit
#: audio (-90 dBFS), so only digital silence or float rounding noise is refused, never quiet music.
SILENCE_PEAK = 1e-6
#: soxr's "HQ" (20-bit precision, soxr's own default) is already below the noise floor of any 16-bit source,
#: and MERT sees float32 audio; "VHQ" would only cost time.
RESAMPLING_QUALITY = "HQ"
#: Frames decoded per block while mixing a file down to mono: memory stays one block plus the mono result.
READ_BLOCK_FRAMES = 1 << 16

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | np.ndarray | torch.Tensor


def load_audio(
    source: AudioSource,
    sampling_rate: int | None = None,
    *,
    target_sampling_rate: int = 24000,
    max_seconds: float | None = 60.0,
    reject_silence: bool = True,
) -> np.ndarray:
    """Load one audio input as a float32 [T] mono waveform at `target_sampling_rate`.

    Args:
        source: a path (WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF... whatever libsndfile reads; no ffmpeg), the
            bytes of such a file or an open binary file object, or a numpy array / torch tensor of samples: [T], [C, T] or [T, C] (the
            smaller dimension is the channels when it is at most 8). Integer arrays are scaled to [-1, 1] as
            a PCM file would be (int16 / 32768, uint8 centred on 128).
        sampling_rate: the rate of an array or tensor (required for them). Ignored for files and bytes,
            whose header states their rate.
        target_sampling_rate: rate of the result (MERT's 24 kHz).
        max_seconds: keep only the first `max_seconds` (the paper's 60 s); `None` keeps everything. The
            start is kept because EMOPIA and VGMIDI clips are annotated from their start and the paper reads
            its 60 s from the start too; a file is read only that far, so a one-hour file costs no more
            memory or time than a minute of it.
        reject_silence: refuse a clip whose (cropped) peak is below -120 dBFS, as it carries no information.

    Returns:
        float32 [T] mono (the mean of the channels), resampled with soxr ("HQ").

    Raises:
        PoolingVQInputError: missing, empty, unreadable or non-audio file; zero-length, silent or non-finite
            audio; absurd sampling rate or channel count.
    """
    _check_sampling_rate("target_sampling_rate", target_sampling_rate, source)
    if max_seconds is not None and not max_seconds > 0:
        raise PoolingVQInputError(source, f"max_seconds must be positive or None, got {max_seconds}")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        if sampling_rate is None:
            raise PoolingVQInputError(source, "an array or tensor of samples needs its sampling_rate")
        _check_sampling_rate("sampling rate", sampling_rate, source)
        waveform = _mono_from_array(source, sampling_rate, max_seconds)
    else:
        waveform, sampling_rate = _mono_from_file(source, max_seconds)

    if waveform.size == 0:
        raise PoolingVQInputError(source, "the audio has no samples (zero length)")
    if not np.isfinite(waveform).all():
        raise PoolingVQInputError(source, "the audio contains NaN or infinite samples")
    if reject_silence and np.abs(waveform).max() < SILENCE_PEAK:
        span = "audio is" if max_seconds is None else f"first {max_seconds:g} s of the audio are"
        raise PoolingVQInputError(source, f"the {span} silent (peak below -120 dBFS)")
    if sampling_rate != target_sampling_rate:
        waveform = soxr.resample(waveform, sampling_rate, target_sampling_rate, quality=RESAMPLING_QUALITY)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def _check_sampling_rate(name: str, rate: Any, source: object) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise PoolingVQInputError(source, f"{name} must be an integer number of Hz, got {rate!r}")
    if not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise PoolingVQInputError(
            source, f"{name} {rate} Hz is outside [{MIN_SAMPLING_RATE}, {MAX_SAMPLING_RATE}] Hz"
        )


def _crop_frames(max_seconds: float | None, sampling_rate: int) -> int | None:
    return None if max_seconds is None else max(1, math.ceil(max_seconds * sampling_rate))


def _mono_from_array(
    source: np.ndarray | torch.Tensor, sampling_rate: int, max_seconds: float | None
) -> np.ndarray:
    """[T], [C, T] or [T, C] samples -> float32 [T'] mono, T' <= max_seconds * sampling_rate.

    The time axis is cropped before any conversion, so a long int16 array is never copied whole.
    """
    samples = source.detach().cpu() if isinstance(source, torch.Tensor) else source
    if samples.ndim == 1:
        samples = samples[:, None]
    elif samples.ndim == 2:
        if 0 in samples.shape:
            raise PoolingVQInputError(source, "the audio has no samples (zero length)")
        if min(samples.shape) > MAX_ARRAY_CHANNELS:
            raise PoolingVQInputError(
                source,
                f"a 2-D array is [C, T] or [T, C] with at most {MAX_ARRAY_CHANNELS} channels; "
                "pass a batch of clips as a list of arrays",
            )
        # The smaller dimension is the channels; a tie is read as [C, T], torch's and librosa's convention.
        if samples.shape[0] <= samples.shape[1]:
            samples = samples.T
    else:
        raise PoolingVQInputError(
            source, f"samples must be [T], [C, T] or [T, C], got {samples.ndim} dimensions"
        )
    samples = samples[: _crop_frames(max_seconds, sampling_rate)]
    if isinstance(samples, torch.Tensor):
        if samples.is_complex():
            raise PoolingVQInputError(source, "complex samples are not audio")
        samples = (samples.to(torch.float32) if samples.is_floating_point() else samples).numpy()
    return _as_float_samples(samples, source).mean(axis=1, dtype=np.float32)


def _as_float_samples(samples: np.ndarray, source: object) -> np.ndarray:
    """Real samples [T, C] -> float32, integer PCM scaled to [-1, 1] as libsndfile scales PCM files."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype.kind == "i":
        return samples.astype(np.float32) / -float(np.iinfo(samples.dtype).min)
    if samples.dtype.kind == "u":
        midpoint = float(np.iinfo(samples.dtype).max // 2 + 1)
        return (samples.astype(np.float32) - midpoint) / midpoint
    raise PoolingVQInputError(source, f"samples of dtype {samples.dtype} are not audio")


def _mono_from_file(source: object, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """A path, bytes or binary file object -> (float32 [T] mono of at most max_seconds, its sampling rate)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise PoolingVQInputError(source, "no such file")
        if not os.path.isfile(path):
            raise PoolingVQInputError(source, "not a file")
        if os.path.getsize(path) == 0:
            raise PoolingVQInputError(source, "the file is empty")
        opened: Any = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise PoolingVQInputError(source, "the audio bytes are empty")
        opened = io.BytesIO(source)
    elif hasattr(source, "read"):
        opened = source
    else:
        raise PoolingVQInputError(
            source,
            "audio must be a path, bytes, a numpy array or a torch tensor (a batch is a list of these)",
        )

    try:
        with sf.SoundFile(opened) as audio_file:
            _check_sampling_rate("sampling rate", audio_file.samplerate, source)
            if not 1 <= audio_file.channels <= MAX_FILE_CHANNELS:
                raise PoolingVQInputError(
                    source, f"{audio_file.channels} channels (at most {MAX_FILE_CHANNELS})"
                )
            frames = audio_file.frames
            max_frames = _crop_frames(max_seconds, audio_file.samplerate)
            if max_frames is not None:
                frames = min(frames, max_frames)
            mono = np.empty(frames, dtype=np.float32)
            filled = 0
            # Decoding block by block and averaging the channels at once keeps memory at the mono result,
            # whatever the channel count; `frames=` stops decoding at the crop.
            for block in audio_file.blocks(READ_BLOCK_FRAMES, frames=frames, dtype="float32", always_2d=True):
                mono[filled : filled + len(block)] = block.mean(axis=1)
                filled += len(block)
            return mono[:filled], audio_file.samplerate
    except sf.SoundFileError as error:
        raise PoolingVQInputError(
            source,
            "not audio that libsndfile can read (WAV, FLAC, OGG, MP3, AIFF...); convert other formats "
            f"(e.g. AAC/M4A) to WAV or FLAC first. libsndfile said: {error}",
        ) from error


class PoolingVQFeatureExtractor(SequenceFeatureExtractor):
    r"""MERT's feature extractor (transformers' `Wav2Vec2FeatureExtractor` at 24 kHz), reading any audio input.

    Every input goes through [`load_audio`]: mixed to mono, cropped to `max_seconds`, resampled to
    `sampling_rate`. Each waveform is then normalised over its own samples, `(x - mean) / sqrt(var + 1e-7)`
    (a constant clip gives zeros, never NaN), and the batch is padded with `padding_value` to the longest.

    Args:
        feature_size: values per sample (1: raw audio).
        sampling_rate: the encoder's rate (MERT: 24000).
        padding_value: value of padded samples (0.0).
        do_normalize: zero mean / unit variance per example, as MERT was trained.
        return_attention_mask: return `attention_mask` (1 on real samples, 0 on padding).
        max_seconds: inputs are cropped to their first `max_seconds` (the paper's 60 s); `None` keeps all.
        reject_silence: refuse silent clips (see [`load_audio`]) instead of returning all-zero features.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 24000,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        return_attention_mask: bool = True,
        max_seconds: float | None = 60.0,
        reject_silence: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs
        )
        self.do_normalize = do_normalize
        self.return_attention_mask = return_attention_mask
        self.max_seconds = max_seconds
        self.reject_silence = reject_silence

    def __call__(
        self,
        raw_speech: AudioSource | list[AudioSource] | tuple[AudioSource, ...],
        sampling_rate: int | None = None,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Load, normalise and pad one input or a list of inputs.

        Args:
            raw_speech: one audio input or a list of them (anything [`load_audio`] takes). A single 2-D array
                is ONE multi-channel clip, not a batch: pass a batch as a list.
            sampling_rate: rate of array / tensor inputs; files state their own.
            padding: `True` / `"longest"` pads to the longest clip, `"max_length"` to `max_length`;
                `False` / `"do_not_pad"` requires clips of equal length.
            max_length: length to pad to with `padding="max_length"` (longer clips are an error).
            pad_to_multiple_of: round the padded length up to a multiple of this.
            return_attention_mask: overrides `self.return_attention_mask`.
            return_tensors: `"pt"`, `"np"` or `None` (numpy arrays).

        Returns:
            [`BatchFeature`] with `input_values` float32 [B, T] and, if asked, `attention_mask` int32 [B, T].
        """
        if kwargs:
            logger.warning(f"PoolingVQFeatureExtractor ignores the arguments {sorted(kwargs)}")
        sources = list(raw_speech) if isinstance(raw_speech, (list, tuple)) else [raw_speech]
        if not sources:
            raise PoolingVQInputError(raw_speech, "no audio inputs in the batch")
        waveforms = [self.load(source, sampling_rate) for source in sources]
        lengths = np.array([len(waveform) for waveform in waveforms])
        padded_length = self._padded_length(lengths, padding, max_length, pad_to_multiple_of)

        positions = np.arange(padded_length)
        if self.padding_side == "left":
            valid = positions[None, :] >= (padded_length - lengths)[:, None]
        else:
            valid = positions[None, :] < lengths[:, None]
        input_values = np.full((len(waveforms), padded_length), self.padding_value, dtype=np.float32)
        # Boolean-mask assignment fills rows in order, so the concatenated clips land on their own rows.
        input_values[valid] = np.concatenate(waveforms)
        if self.do_normalize:
            input_values = self._normalize(input_values, valid, lengths)

        data: dict[str, np.ndarray] = {"input_values": input_values}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            data["attention_mask"] = valid.astype(np.int32)
        return BatchFeature(data, tensor_type=return_tensors)

    def load(self, source: AudioSource, sampling_rate: int | None = None) -> np.ndarray:
        """One audio input as this extractor reads it ([`load_audio`]): float32 [T] mono at its rate, its first
        `max_seconds`, silence refused as configured; before padding and normalisation."""
        return load_audio(
            source,
            sampling_rate,
            target_sampling_rate=self.sampling_rate,
            max_seconds=self.max_seconds,
            reject_silence=self.reject_silence,
        )

    def _padded_length(
        self, lengths: np.ndarray, padding: bool | str, max_length: int | None, pad_to_multiple_of: int | None
    ) -> int:
        longest = int(lengths.max())
        if padding in (True, "longest"):
            padded_length = longest
        elif padding == "max_length":
            if max_length is None:
                raise ValueError('padding="max_length" needs max_length')
            if longest > max_length:
                raise ValueError(f"a clip has {longest} samples, more than max_length={max_length}")
            padded_length = max_length
        elif padding in (False, "do_not_pad"):
            if (lengths != longest).any():
                raise ValueError("clips differ in length; pass padding=True to pad them into one batch")
            padded_length = longest
        else:
            raise ValueError(f"padding={padding!r}: use True, 'longest', 'max_length', False or 'do_not_pad'")
        if pad_to_multiple_of:
            padded_length = -(-padded_length // pad_to_multiple_of) * pad_to_multiple_of
        return padded_length

    def _normalize(self, input_values: np.ndarray, valid: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Zero mean, unit variance over each row's valid samples; padding is reset to `padding_value`.

        Sums are accumulated in float64 (a minute at 24 kHz is 1.44 M samples, where float32 sums drift) while
        the samples stay float32 and are worked on in place: one float32 copy of the batch in all.
        """
        out = np.where(valid, input_values, 0.0).astype(np.float32, copy=False)
        mean = out.sum(axis=1, dtype=np.float64) / lengths
        out -= mean[:, None].astype(np.float32)
        np.multiply(out, valid, out=out)  # padding back to 0 before the variance
        variance = np.einsum("bt,bt->b", out, out, dtype=np.float64) / lengths
        out /= np.sqrt(variance + 1e-7)[:, None].astype(np.float32)
        if self.padding_value != 0.0:
            out[~valid] = self.padding_value
        return out


PoolingVQFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["PoolingVQFeatureExtractor", "load_audio"]
