"""What a MIDI file says about how a piece is played, as one vector of performance statistics.

Remote code: copied flat into every saved model folder; imports only numpy, symusic and its own siblings.

MIDI-BERT's compound words hold where a note starts in its bar, its pitch and its duration in beats: neither how
hard it is struck (velocity) nor how fast the beats go (tempo). Those are the plainest cues of arousal. In EMOPIA a
clip's mean velocity is 77 +- 11 in Q1/Q2 against 54 +- 10 in Q3/Q4, and it plays 8.6-10.2 notes a second against
4.6-4.8. A model that reads only CP tokens hears neither unless its audio path does, and a MIDI at another tempo
hides the second behind beat positions. Valence leans on mode, which CP tokens hold only as a relation between
pitches that a small encoder trained on 767 clips may not learn in every key.

`performance_statistics` reads them here, in real time (the tempo map applied), from the same hardened MIDI reader
as the tokenizer. A logistic regression on these numbers alone reaches EMOPIA validation macro-F1 0.65 (test 0.65),
the same as the trained neural model at the time, and with less gap between splits. `PoolingVQConfig.
midi_statistics` gives them to the model as one more MIDI input, next to the encoder's tokens.
"""

from __future__ import annotations

import os

import numpy as np
import symusic

from .configuration_poolingvq import TRANSCRIBED_STATISTICS_READINGS
from .errors_poolingvq import PoolingVQInputError
from .logmel_poolingvq import MAJOR_PROFILE, MINOR_PROFILE
from .tokenization_poolingvq import load_score


def _key_profiles() -> np.ndarray:
    """Row k: the profile of key k (12 major from C, then 12 minor), the log-mel front end's Krumhansl-Kessler
    profiles in float64, standardized so that a dot product with a standardized histogram / 12 is a correlation."""
    profiles = np.stack(
        [np.roll(np.array(MAJOR_PROFILE), k) for k in range(12)]
        + [np.roll(np.array(MINOR_PROFILE), k) for k in range(12)]
    )
    return (profiles - profiles.mean(1, keepdims=True)) / profiles.std(1, keepdims=True)


KEY_PROFILES = _key_profiles()  # [24, 12]

#: Span of the windows over which local mode, density and loudness are measured (real seconds).
WINDOW_SECONDS = 4.0
#: Notes whose onsets lie this close (seconds) sound together: one chord for the interval statistics.
CHORD_SECONDS = 0.03
#: How many later notes of the same chord each note is compared with (chords of up to 8 notes are complete).
CHORD_REACH = 7
#: Longer pieces are refused: no music lasts a day, and a note placed there by a broken file would otherwise make
#: the per-window arrays as large as the span.
MAX_PIECE_SECONDS = 24 * 3600.0

#: The statistics, in the order of `performance_statistics`' vector.
STATISTIC_NAMES: tuple[str, ...] = (
    "notes_per_second",
    "onsets_per_second",
    "notes_per_onset",
    "velocity_mean",
    "velocity_std",
    "velocity_p90_minus_p10",
    "pitch_mean",
    "pitch_std",
    "pitch_p10",
    "pitch_p90",
    "log_duration_mean",
    "log_duration_median",
    "sustain_pedal_share",
    "major_key_correlation",
    "minor_key_correlation",
    "major_minus_minor",
    "window_mode_mean",
    "window_mode_std",
    "window_major_share",
    "window_density_std",
    "window_velocity_std",
    "top_voice_step_mean",
    *(f"scale_degree_{degree}" for degree in range(12)),
    *(f"chord_interval_class_{interval}" for interval in range(1, 7)),
)
NUM_STATISTICS = len(STATISTIC_NAMES)
#: The statistics a transposition by k semitones moves, each by k / 127 (pitch levels; the spread, the key
#: correlations and the histogram turned to the estimated key stay as they are).
PITCH_LEVEL_STATISTICS: tuple[str, ...] = ("pitch_mean", "pitch_p10", "pitch_p90")
PITCH_LEVEL_INDEX = np.array([STATISTIC_NAMES.index(name) for name in PITCH_LEVEL_STATISTICS])

#: What a transcription of a recording does not know (see `transcription_poolingvq`): how hard each key was
#: struck (basic-pitch's note "amplitude" is its own confidence, which correlates -0.51 with the performed velocity
#: on EMOPIA validation clips), the sustain pedal (never transcribed), and how long keys were held (transcribed
#: notes end where their sound fades: mean log duration -0.85 against -0.39). `performance_statistics(...,
#: transcribed=True)` gives NaN for these: unknown, which the model reads as the training clips' mean. (On EMOPIA
#: validation recordings in a held-out piano, three seeds: 0.584 accuracy so, 0.579 reading them as transcribed.)
UNKNOWN_FROM_TRANSCRIPTION: tuple[str, ...] = tuple(
    name
    for name in STATISTIC_NAMES
    if "velocity" in name or "duration" in name or name == "sustain_pedal_share"
)
TRANSCRIPTION_UNKNOWN_INDEX = np.array([STATISTIC_NAMES.index(name) for name in UNKNOWN_FROM_TRANSCRIPTION])


def performance_statistics(
    midi: str | os.PathLike | bytes | symusic.Score,
    source: object = None,
    transcribed: bool = False,
    transcribed_statistics: str = "unknown",
) -> np.ndarray:
    """How a piece is played, from its MIDI: float32 `[NUM_STATISTICS]`, named by `STATISTIC_NAMES`.

    Times are in seconds (the file's tempo map applied), so the same notes written at another tempo give the
    same figures; velocities are MIDI's 0..127 divided by 127; pitches are MIDI numbers / 127. The key is the
    Krumhansl-Kessler profile that correlates best with the duration-weighted pitch-class histogram; the
    histogram is then given in scale degrees of that key (a transposition leaves it unchanged). Notes of drum
    tracks are left out. Vectorised over notes and windows.

    With `transcribed` (the MIDI was transcribed from a recording) and `transcribed_statistics="unknown"`, the
    statistics named in `UNKNOWN_FROM_TRANSCRIPTION` are NaN: a transcription does not know them. With
    `"as_transcribed"` they are computed from the transcription as they are (for a model trained so).

    Raises:
        PoolingVQInputError: the MIDI is missing, unreadable, corrupt, too large, has no pitched note, or lasts
            longer than `MAX_PIECE_SECONDS`.
    """
    if transcribed_statistics not in TRANSCRIBED_STATISTICS_READINGS:
        raise ValueError(
            f"transcribed_statistics={transcribed_statistics!r}: choose one of {TRANSCRIBED_STATISTICS_READINGS}"
        )
    source = midi if source is None else source  # what error messages name (the path of a Score read from it)
    score = load_score(midi).to("second")
    start, duration, pitch, velocity = _pitched_notes(score, source)
    order = np.lexsort((pitch, start))
    start, duration, pitch, velocity = start[order], duration[order], pitch[order], velocity[order]
    first, end = start[0], float((start + duration).max())
    span = max(end - first, 1e-3)
    if span > MAX_PIECE_SECONDS:
        raise PoolingVQInputError(
            source,
            f"its notes span {span / 3600:.0f} hours; no piece lasts over {MAX_PIECE_SECONDS / 3600:.0f}",
        )

    chord = np.concatenate([[0], np.cumsum(np.diff(start) > CHORD_SECONDS)])  # [N] chord index
    num_chords = int(chord[-1]) + 1
    histogram = np.bincount(pitch % 12, weights=np.maximum(duration, 1e-3), minlength=12)
    correlations = key_correlations(histogram[None])[0]  # [24]
    key = int(correlations.argmax()) % 12

    window = np.floor((start - first) / WINDOW_SECONDS).astype(np.int64)
    num_windows = int(window[-1]) + 1
    notes_in_window = np.bincount(window, minlength=num_windows)
    window_histograms = np.bincount(
        window * 12 + pitch % 12, weights=np.maximum(duration, 1e-3), minlength=num_windows * 12
    ).reshape(num_windows, 12)
    local = key_correlations(window_histograms[notes_in_window >= 3])  # windows with a few notes
    local_mode = local[:, :12].max(1) - local[:, 12:].max(1) if len(local) else np.zeros(1)
    window_velocity = np.bincount(window, weights=velocity, minlength=num_windows)
    window_velocity = window_velocity[notes_in_window > 0] / notes_in_window[notes_in_window > 0]

    chord_tops = np.maximum.reduceat(pitch, np.flatnonzero(np.diff(chord, prepend=-1)))
    steps = np.abs(np.diff(chord_tops)) if len(chord_tops) > 1 else np.zeros(1)

    statistics = np.concatenate(
        [
            [
                len(start) / span,
                num_chords / span,
                len(start) / num_chords,
                velocity.mean(),
                velocity.std(),
                np.percentile(velocity, 90) - np.percentile(velocity, 10),
                pitch.mean() / 127,
                pitch.std() / 127,
                np.percentile(pitch, 10) / 127,
                np.percentile(pitch, 90) / 127,
                np.log(np.maximum(duration, 1e-3)).mean(),
                np.log(np.maximum(np.median(duration), 1e-3)),
                sustain_pedal_share(score, first, end),
                correlations[:12].max(),
                correlations[12:].max(),
                correlations[:12].max() - correlations[12:].max(),
                local_mode.mean(),
                local_mode.std(),
                (local_mode > 0).mean(),
                (notes_in_window / WINDOW_SECONDS).std(),
                window_velocity.std(),
                steps.mean() / 12,
            ],
            np.roll(histogram / histogram.sum(), -key),
            chord_interval_classes(pitch, chord),
        ]
    ).astype(np.float32)
    if transcribed and transcribed_statistics == "unknown":
        statistics[TRANSCRIPTION_UNKNOWN_INDEX] = np.nan
    return statistics


def _pitched_notes(
    score: symusic.Score, source: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """start, duration (seconds), pitch (int64) and velocity (0..1) of every note of the non-drum tracks."""
    columns = [track.notes.numpy() for track in score.tracks if not track.is_drum]
    columns = [notes for notes in columns if len(notes["time"])]
    if not columns:
        raise PoolingVQInputError(source, "contains no pitched notes")
    start = np.concatenate([notes["time"] for notes in columns]).astype(np.float64)
    duration = np.concatenate([notes["duration"] for notes in columns]).astype(np.float64)
    pitch = np.concatenate([notes["pitch"] for notes in columns]).astype(np.int64)
    velocity = np.concatenate([notes["velocity"] for notes in columns]).astype(np.float64) / 127
    return start, duration, pitch, velocity


def key_correlations(histograms: np.ndarray) -> np.ndarray:
    """Pitch-class histograms `[K, 12]` -> their correlations with the 24 key profiles `[K, 24]` (12 major keys
    from C, then 12 minor); a flat histogram correlates 0 with every key."""
    centred = histograms - histograms.mean(-1, keepdims=True)
    spread = centred.std(-1, keepdims=True)
    standardized = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
    return standardized @ KEY_PROFILES.T / 12


def sustain_pedal_share(score: symusic.Score, first: float, end: float) -> float:
    """The share of the piece's span (seconds) during which the sustain pedal (controller 64 >= 64) is down."""
    events = [track.controls.numpy() for track in score.tracks]
    times = np.concatenate([e["time"][e["number"] == 64] for e in events]).astype(np.float64)
    if not len(times):
        return 0.0
    values = np.concatenate([e["value"][e["number"] == 64] for e in events])
    order = np.argsort(times, kind="stable")
    times, down = np.clip(times[order], first, end), values[order] >= 64
    held = np.diff(np.append(times, end)) * down
    return float(held.sum() / max(end - first, 1e-3))


def chord_interval_classes(pitch: np.ndarray, chord: np.ndarray) -> np.ndarray:
    """The share of each interval class 1..6 (semitone ... tritone) among the pairs of notes struck together:
    thirds and sixths tell major from minor harmony, seconds and tritones tension. float `[6]`, zeros when the
    piece has no chord."""
    counts = np.zeros(7)
    for offset in range(
        1, CHORD_REACH + 1
    ):  # pairs (i, i + offset) in the same chord; loop over offsets only
        same = chord[offset:] == chord[:-offset]
        if not same.any():
            break
        classes = (pitch[offset:][same] - pitch[:-offset][same]) % 12
        counts += np.bincount(np.minimum(classes, 12 - classes), minlength=7)
    counts = counts[1:]  # unisons and octaves say nothing of the harmony
    total = counts.sum()
    return counts / total if total else counts


__all__ = [
    "NUM_STATISTICS",
    "STATISTIC_NAMES",
    "key_correlations",
    "performance_statistics",
]
