"""A recording -> the notes played in it (MIDI), so that a recording alone can be read like a piece with its MIDI.

Remote code: copied flat into every saved model folder; imports numpy, soundfile and its own siblings, and Spotify's
basic-pitch (`basic_pitch`, with ONNX Runtime) only when a transcription is asked for.

Why: the model was trained on MIDI with audio synthesized from it. Given a recording alone, it can only answer
from the sound (modality dropout taught it to), and the sound alone depends on the piano's timbre: on EMOPIA
validation clips rendered with a piano it never heard (MuseScore General), the embedded recipe answers 0.39 from
the audio alone and 0.58 from the audio with its transcription (accuracy, mean of three seeds). A transcription gives back the pitches, onsets,
chords, mode and density that the MIDI path reads, which change little from one piano to another.

Which transcriber: basic-pitch (Bittner et al., ICASSP 2022) is a small polyphonic transcriber whose weights come
inside its PyPI wheel (230 KB of ONNX), so it installs and runs offline, on a CPU, at about 0.5 s per 30 s clip.
Piano-specific transcribers (Onsets and Frames, ByteDance's high-resolution model) are more accurate on piano and
give velocities, but their checkpoints are downloads that no package carries.

What it cannot tell: how hard a key was struck (its note amplitude is the network's confidence, not loudness),
the sustain pedal and how long keys were held. `performance_statistics(..., transcribed=True)` marks those as
unknown (see `UNKNOWN_FROM_TRANSCRIPTION`); the loudness is still heard, by the audio path.

Install: basic-pitch's metadata asks for TensorFlow on Python >= 3.11, which it does not need when ONNX Runtime is
there, so it is installed without its dependencies, and these are installed by the `transcription` extra
(`bash scripts/install_transcription.sh` does both).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
import os
import tempfile
from typing import Any

import numpy as np
import soundfile

from .errors_poolingvq import PoolingVQInputError

#: The transcriber, as the pipeline's details and the model card name it.
TRANSCRIBER = "basic-pitch 0.4 (ONNX)"
#: basic-pitch's thresholds: the probability above which a note starts (`onset_threshold`) and goes on
#: (`frame_threshold`), and its shortest note in milliseconds. Its defaults, kept: on the 198 EMOPIA validation
#: clips rendered with a held-out piano, the embedded recipe's three seeds answer 0.584 (mean accuracy) with them,
#: 0.569 with `onset_threshold` 0.6 and 0.569 without its "melodia" clean-up (the audio alone: 0.394).
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MINIMUM_NOTE_MS = 127.7
INSTALL_HINT = (
    "transcribing a recording needs basic-pitch: `bash scripts/install_transcription.sh`, or "
    '`pip install --no-deps basic-pitch==0.4.0 && pip install "poolingvq[transcription]"`'
)


def transcription_available() -> bool:
    """Whether basic-pitch and ONNX Runtime are installed (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("basic_pitch", "onnxruntime"))


@functools.lru_cache(maxsize=1)
def _basic_pitch() -> tuple[Any, Any, Any, float]:
    """basic-pitch's network (`run_inference`), its note maker (`model_output_to_notes`), its ONNX model and its
    frame rate, loaded once (its `predict` is these two calls, plus a print of the file's path). Its import logs a
    warning for each backend it does not find (TensorFlow, TFLite, CoreML); those are silenced, as ONNX Runtime is
    the one it uses here."""
    if not transcription_available():
        raise ImportError(INSTALL_HINT)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:  # optional: `poolingvq export-space` pins no guarded import, so a Space reads a recording as audio alone
        import basic_pitch
        from basic_pitch.constants import AUDIO_SAMPLE_RATE, FFT_HOP
        from basic_pitch.inference import Model, run_inference
        from basic_pitch.note_creation import model_output_to_notes
    except ImportError as error:  # installed, but one of what it imports is not
        raise ImportError(f"{error}: {INSTALL_HINT}") from error
    finally:
        root.setLevel(level)
    onnx_path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
    return run_inference, model_output_to_notes, Model(onnx_path), AUDIO_SAMPLE_RATE / FFT_HOP


def transcribe_audio(waveform: np.ndarray, sampling_rate: int, source: object = None) -> bytes:
    """The notes played in a mono recording, as the bytes of a one-track piano MIDI file (120 bpm).

    Args:
        waveform: float `[T]` mono samples.
        sampling_rate: their rate in Hz (basic-pitch resamples to its own 22.05 kHz).
        source: what error messages name (the recording's path or URL).

    Raises:
        ImportError: basic-pitch is not installed (the message says how to install it).
        PoolingVQInputError: the transcriber heard no note on a piano's keys.
    """
    run_inference, model_output_to_notes, model, frames_per_second = _basic_pitch()
    source = waveform if source is None else source
    with tempfile.TemporaryDirectory(prefix="poolingvq-transcription-") as folder:
        # basic-pitch reads a file (librosa.load); float32 WAV keeps the samples as they are
        path = os.path.join(folder, "recording.wav")
        soundfile.write(path, np.asarray(waveform, dtype=np.float32), int(sampling_rate), subtype="FLOAT")
        activations = run_inference(path, model)
    midi, _ = model_output_to_notes(
        activations,
        onset_thresh=ONSET_THRESHOLD,
        frame_thresh=FRAME_THRESHOLD,
        min_note_len=int(np.round(MINIMUM_NOTE_MS / 1000 * frames_per_second)),
        include_pitch_bends=False,  # the tokenizer and the statistics read none
    )
    if not any(instrument.notes for instrument in midi.instruments):
        raise PoolingVQInputError(source, "no notes could be heard in the recording to transcribe")
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


__all__ = ["TRANSCRIBER", "transcribe_audio", "transcription_available"]
