"""Does a model answer to what a listener hears? The same piece played faster, slower, louder, softer or in
another key, and how a classifier's probabilities move.

A model is judged as a listener would judge it: the same piece played faster or louder should sound more
aroused (probability moving toward Q1/Q2, the high-arousal quadrants), slower or softer less so (toward Q3/Q4),
and a transposition by a tone should rarely change the answer. Accuracy on a test split cannot show this: a model can
score above chance and still give the same answer whatever the tempo or loudness of a piece.

Each variant changes one thing of the performance and nothing else:
- tempo: every tempo event scaled (the notes stay on their beats; only the clock runs faster or slower);
- loudness: every note's velocity shifted, clipped to 1..127;
- key: every pitched note shifted by some semitones (drums are not).

    from poolingvq.listening import cue_responses
    figures = cue_responses(pipeline("music-emotion"), ["a.mid", "b.mid"])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import symusic

from .tokenization_poolingvq import load_score

#: The variants `cue_responses` measures, with the direction a listener expects of P(high arousal) = P(Q1)+P(Q2):
#: +1 up, -1 down, 0 the same answer.
TEMPO_FACTOR = 1.3
VELOCITY_SHIFT = 25
TRANSPOSITION = 2
EXPECTED_DIRECTION = {
    "faster": +1,
    "slower": -1,
    "louder": +1,
    "softer": -1,
    "transposed_up": 0,
    "transposed_down": 0,
}
HIGH_AROUSAL = ("Q1", "Q2")


def with_tempo(score: symusic.Score, factor: float) -> symusic.Score:
    """The piece played `factor` times faster (0.5: half as fast): every tempo scaled, the notes unchanged."""
    changed = score.copy()
    tempos = list(changed.tempos)
    if not tempos:  # a MIDI file without a tempo event plays at 120 bpm
        tempos = [symusic.Tempo(0, 120.0)]
    changed.tempos = [symusic.Tempo(tempo.time, tempo.qpm * factor) for tempo in tempos]
    return changed


def with_velocity(score: symusic.Score, shift: int) -> symusic.Score:
    """The piece played louder (`shift` > 0) or softer: every velocity shifted, kept in 1..127."""
    changed = score.to("tick")  # a copy, in ticks
    for track in changed.tracks:
        notes = track.notes.numpy()
        if len(notes["time"]) == 0:
            continue
        velocity = np.clip(notes["velocity"].astype(np.int64) + shift, 1, 127).astype(notes["velocity"].dtype)
        track.notes = symusic.Note.from_numpy(
            notes["time"], notes["duration"], notes["pitch"], velocity, "tick"
        )
    return changed


def transposed(score: symusic.Score, semitones: int) -> symusic.Score:
    """The piece in another key: every pitched note `semitones` higher (lower when negative)."""
    changed = score.copy()
    for track in changed.tracks:
        if not track.is_drum:
            track.shift_pitch(semitones, inplace=True)
    return changed


VARIANTS: dict[str, Callable[[symusic.Score], symusic.Score]] = {
    "faster": lambda score: with_tempo(score, TEMPO_FACTOR),
    "slower": lambda score: with_tempo(score, 1 / TEMPO_FACTOR),
    "louder": lambda score: with_velocity(score, VELOCITY_SHIFT),
    "softer": lambda score: with_velocity(score, -VELOCITY_SHIFT),
    "transposed_up": lambda score: transposed(score, TRANSPOSITION),
    "transposed_down": lambda score: transposed(score, -TRANSPOSITION),
}


def probabilities(scores: Sequence[dict[str, Any]]) -> dict[str, float]:
    """A pipeline answer (`[{"label", "score"}, ...]`) as `{label: probability}`."""
    return {item["label"]: float(item["score"]) for item in scores}


def cue_responses(
    classify: Callable[..., Any],
    midis: Sequence[str | os.PathLike | bytes],
    variants: Sequence[str] = tuple(VARIANTS),
) -> dict[str, Any]:
    """How `classify` (a music-emotion pipeline) answers each variant of each piece, given as MIDI only (its audio
    is synthesized from the varied MIDI, as a listener would hear that performance).

    Returns, per variant: `mean_high_arousal_change` (mean over pieces of the change in P(Q1)+P(Q2) from the
    original), `share_toward_expected` (share of pieces whose P(Q1)+P(Q2) moved the expected way; for
    transpositions, the share whose answer stayed the same), `share_same_answer`, and the expected direction;
    plus the piece count.
    """
    originals = [load_score(midi) for midi in midis]
    base = [probabilities(classify({"midi": score.dumps_midi()})) for score in originals]
    base_arousal = np.array([sum(p[label] for label in HIGH_AROUSAL) for p in base])
    base_answer = [max(p, key=p.get) for p in base]
    figures: dict[str, Any] = {"pieces": len(originals)}
    for name in variants:
        changed = [
            probabilities(classify({"midi": VARIANTS[name](score).dumps_midi()})) for score in originals
        ]
        arousal = np.array([sum(p[label] for label in HIGH_AROUSAL) for p in changed])
        same = np.array([max(p, key=p.get) == answer for p, answer in zip(changed, base_answer, strict=True)])
        change = arousal - base_arousal
        expected = EXPECTED_DIRECTION[name]
        toward = same if expected == 0 else np.sign(change) == expected
        figures[name] = {
            "expected_direction": expected,
            "mean_high_arousal_change": float(change.mean()),
            "share_toward_expected": float(toward.mean()),
            "share_same_answer": float(same.mean()),
        }
    return figures


__all__ = [
    "VARIANTS",
    "cue_responses",
    "transposed",
    "with_tempo",
    "with_velocity",
]
