"""`PoolingVQProcessor`: files -> model inputs, for both modalities at once.

Remote code: imports only numpy, torch, transformers and its siblings.

The audio half is [`PoolingVQFeatureExtractor`] (any audio file, bytes or array -> 24 kHz normalised waveform);
the MIDI half is [`CPMidiTokenizer`] (MIDI -> MIDI-BERT compound-word tokens). A MIDI-only input can still feed
the audio branch: its audio is synthesized from the MIDI with a General MIDI soundfont; a recording alone can feed
the MIDI branch: its notes are transcribed from it (`transcribe_missing_midi`, with basic-pitch installed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import BatchFeature, ProcessorMixin

from .configuration_poolingvq import TRANSCRIBED_STATISTICS_READINGS
from .feature_extraction_poolingvq import PoolingVQFeatureExtractor
from .performance_poolingvq import performance_statistics
from .synthesis_poolingvq import synthesize_midi
from .tokenization_poolingvq import PAD_TOKEN, CPMidiTokenizer, join_rows, load_score
from .transcription_poolingvq import transcribe_audio


class PoolingVQProcessor(ProcessorMixin):
    r"""Audio feature extractor + CP MIDI tokenizer, saved with the model.

    Args:
        feature_extractor: a [`PoolingVQFeatureExtractor`].
        midi_mode: `"midibert"` (the tokens MIDI-BERT's weights saw) or `"rescaled"`.
        midi_max_length: tokens per MIDI row (512).
        midi_max_rows: rows of `midi_max_length` tokens kept of a long MIDI (1: the piece's start, which is also
            what the audio crop keeps, its first `max_seconds`). The kept rows' tokens are joined into one
            sequence per piece (`join_rows`), which the model reads back row by row (`encode_midi`), as the
            feature cache does.
        soundfont: `.sf2` used to synthesize audio for MIDI-only inputs (None: the General MIDI soundfont
            that pretty_midi's wheel carries).
        synthesis_level: `level` of [`synthesize_midi`]: `"peak"` (every clip at -1 dBFS) or `"velocity"` (the
            performance's own level, for models that read absolute loudness).
        midi_statistics: also return each MIDI's performance statistics (`midi_statistics`, for a model with
            `PoolingVQConfig.midi_statistics`).
        transcribed_statistics: how a transcription's statistics are read (`PoolingVQConfig.transcribed_statistics`):
            `"unknown"` (what it cannot know is NaN) or `"as_transcribed"`.
    """

    def __init__(
        self,
        feature_extractor: PoolingVQFeatureExtractor,
        midi_mode: str = "midibert",
        midi_max_length: int = 512,
        midi_max_rows: int = 1,
        soundfont: str | None = None,
        synthesis_level: str = "peak",
        midi_statistics: bool = False,
        transcribed_statistics: str = "unknown",
        **kwargs: Any,
    ) -> None:
        super().__init__(feature_extractor)
        if transcribed_statistics not in TRANSCRIBED_STATISTICS_READINGS:
            raise ValueError(
                f"transcribed_statistics={transcribed_statistics!r}: choose one of {TRANSCRIBED_STATISTICS_READINGS}"
            )
        self.midi_statistics = midi_statistics
        self.transcribed_statistics = transcribed_statistics
        self.synthesis_level = synthesis_level
        self.midi_mode = midi_mode
        self.midi_max_length = midi_max_length
        self.midi_max_rows = midi_max_rows
        self.soundfont = soundfont
        self.midi_tokenizer = CPMidiTokenizer(mode=midi_mode, max_length=midi_max_length)

    @classmethod
    def for_model(cls, config: Any, **kwargs: Any) -> PoolingVQProcessor:
        """The processor matching a `PoolingVQConfig`: its sampling rate, audio crop and MIDI row length, and, for
        an audio encoder that hears absolute loudness (`LogMelConfig(level="absolute")`), waveforms left at their
        level and synthesis at the performance's level; the MIDI's performance statistics when the model reads
        them."""
        absolute = config.audio_hears_absolute_level
        feature_extractor = PoolingVQFeatureExtractor(
            sampling_rate=config.audio_sampling_rate,
            max_seconds=config.max_audio_seconds,
            do_normalize=not absolute,
        )
        kwargs.setdefault("synthesis_level", "velocity" if absolute else "peak")
        kwargs.setdefault("midi_statistics", config.reads_midi_statistics)
        kwargs.setdefault("transcribed_statistics", config.transcribed_statistics)
        return cls(feature_extractor, midi_max_length=config.max_midi_tokens, **kwargs)

    @property
    def sampling_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    def synthesize(self, midi: str | os.PathLike | bytes, soundfont: str | None = None) -> np.ndarray:
        """Audio for a MIDI-only input: float32 [T] at the feature extractor's rate, its first `max_seconds`, at
        the processor's synthesis level, with `soundfont` (default: the processor's own)."""
        return synthesize_midi(
            midi,
            sample_rate=self.sampling_rate,
            soundfont=self.soundfont if soundfont is None else soundfont,
            max_seconds=self.feature_extractor.max_seconds,
            level=self.synthesis_level,
        )

    def transcribe(self, audio: Any, sampling_rate: int | None = None) -> bytes:
        """The notes of one recording as MIDI bytes (see `transcription_poolingvq`): what `transcribe_missing_midi`
        reads, for a caller who wants to see or keep the transcription."""
        waveform = self.feature_extractor.load(audio, sampling_rate)
        return transcribe_audio(waveform, self.sampling_rate, source=audio)

    def tokenize_midi(self, midi: str | os.PathLike | bytes) -> np.ndarray:
        """CP tokens of one MIDI: int64 [min(rows, midi_max_rows), midi_max_length, 4]."""
        return self.midi_tokenizer(midi, max_rows=self.midi_max_rows)

    def __call__(
        self,
        audio: Any = None,
        midi: str | os.PathLike | bytes | Sequence[str | os.PathLike | bytes] | None = None,
        sampling_rate: int | None = None,
        synthesize_missing_audio: bool = False,
        transcribe_missing_midi: bool = False,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Prepare one piece or a list of pieces.

        Args:
            audio: one audio input or a list (paths, bytes, arrays with `sampling_rate`...).
            midi: one MIDI input (path or bytes) or a list, paired with `audio` item by item.
            synthesize_missing_audio: when only MIDI is given, synthesize the audio from it.
            transcribe_missing_midi: when only audio is given, transcribe its notes (basic-pitch, which must be
                installed); their statistics that a transcription cannot know are NaN (`performance_statistics`).

        Returns:
            `BatchFeature` with `input_values` [B, S] and `attention_mask` [B, S] (audio), `midi_input_ids`
            [B, L, 4] and `midi_attention_mask` [B, L] (MIDI: each piece's kept rows joined, real tokens first; L
            = the longest real token count of the batch, as padding only costs attention time), and with
            `midi_statistics` also `midi_statistics` [B, S], for whichever modalities were given.
        """
        if audio is None and midi is None:
            raise ValueError("give `audio`, `midi` or both")
        midi_list = None if midi is None else (list(midi) if isinstance(midi, (list, tuple)) else [midi])
        if audio is None and synthesize_missing_audio:
            audio = [self.synthesize(m) for m in midi_list]
            sampling_rate = self.sampling_rate
        transcribed = midi is None and audio is not None and transcribe_missing_midi
        if transcribed:
            # each recording decoded once, for the feature extractor and the transcriber
            sources = list(audio) if isinstance(audio, (list, tuple)) else [audio]
            audio = [self.feature_extractor.load(source, sampling_rate) for source in sources]
            sampling_rate = self.sampling_rate
            midi_list = [
                transcribe_audio(waveform, sampling_rate, source=source)
                for waveform, source in zip(audio, sources, strict=True)
            ]
        data: dict[str, Any] = {}
        if audio is not None:
            audio_list = list(audio) if isinstance(audio, (list, tuple)) else [audio]
            if midi_list is not None and len(midi_list) != len(audio_list):
                raise ValueError(f"{len(audio_list)} audio inputs but {len(midi_list)} MIDI inputs")
            features = self.feature_extractor(
                audio_list, sampling_rate=sampling_rate, return_tensors="np", **kwargs
            )
            data["input_values"] = features["input_values"]
            data["attention_mask"] = features["attention_mask"]
        if midi_list is not None:
            # each file read and parsed once, for its tokens and its statistics; errors still name the file
            scores = [(load_score(m), m) for m in midi_list]
            pieces = [
                join_rows(self.midi_tokenizer(score, max_rows=self.midi_max_rows, source=m))
                for score, m in scores
            ]  # each [T_i, 4]
            longest = max(max(len(piece) for piece in pieces), 1)
            tokens = np.empty((len(pieces), longest, 4), dtype=np.int64)
            tokens[:] = PAD_TOKEN
            for row, piece in zip(tokens, pieces, strict=True):
                row[: len(piece)] = piece
            data["midi_input_ids"] = tokens
            data["midi_attention_mask"] = (tokens[..., 0] != PAD_TOKEN[0]).astype(np.int64)
            if self.midi_statistics:
                data["midi_statistics"] = np.stack(
                    [
                        performance_statistics(
                            s,
                            source=m,
                            transcribed=transcribed,
                            transcribed_statistics=self.transcribed_statistics,
                        )
                        for s, m in scores
                    ]
                )
        return BatchFeature(data, tensor_type=return_tensors)


PoolingVQProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["PoolingVQProcessor"]
