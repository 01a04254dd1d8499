"""Example pieces the project writes itself: one short piano MIDI per Russell quadrant.

No dataset file is copied: each example is built from the textbook cues of its quadrant (mode, tempo, register,
loudness, articulation), so the README's main job, the tests and the Space have inputs on any machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic


@dataclass(frozen=True)
class Mood:
    """The musical cues of one quadrant."""

    scale: tuple[int, ...]  # semitones above the tonic
    tonic: int  # MIDI pitch
    tempo: float  # beats per minute
    velocity: int
    notes_per_beat: int  # articulation: many short notes are energetic, few long ones calm
    chord_every_beats: int


MOODS: dict[str, Mood] = {
    # Q1 happy / excited: major, fast, high, loud, busy
    "Q1": Mood(
        (0, 2, 4, 5, 7, 9, 11), tonic=72, tempo=140, velocity=100, notes_per_beat=4, chord_every_beats=2
    ),
    # Q2 tense / angry: diminished and chromatic, fast, low, very loud
    "Q2": Mood((0, 1, 3, 6, 7, 10), tonic=43, tempo=150, velocity=118, notes_per_beat=4, chord_every_beats=1),
    # Q3 sad: natural minor, slow, middle-low, soft, sparse
    "Q3": Mood(
        (0, 2, 3, 5, 7, 8, 10), tonic=57, tempo=58, velocity=48, notes_per_beat=1, chord_every_beats=4
    ),
    # Q4 calm: major, slow, middle, soft, sustained
    "Q4": Mood((0, 2, 4, 7, 9), tonic=65, tempo=68, velocity=55, notes_per_beat=1, chord_every_beats=4),
}


def example_score(quadrant: str = "Q1", seconds: float = 16.0, seed: int = 0) -> symusic.Score:
    """A piano piece of about `seconds` with `quadrant`'s cues: a melody over block chords."""
    if quadrant not in MOODS:
        raise ValueError(f"quadrant must be one of {sorted(MOODS)}, got {quadrant!r}")
    mood = MOODS[quadrant]
    rng = np.random.default_rng(seed)
    ticks_per_beat = 480
    beats = max(int(seconds * mood.tempo / 60), 4)
    step = ticks_per_beat // mood.notes_per_beat

    # melody: a random walk on the scale, one note per step
    count = beats * mood.notes_per_beat
    degrees = np.clip(np.cumsum(rng.integers(-2, 3, size=count)), -7, 10)
    octave, degree = np.divmod(degrees, len(mood.scale))
    pitches = mood.tonic + 12 * octave + np.asarray(mood.scale)[degree]
    starts = np.arange(count) * step

    # chords: tonic triads of the scale every `chord_every_beats`, an octave and a half below the melody
    chord_starts = np.arange(0, beats, mood.chord_every_beats) * ticks_per_beat
    roots = mood.tonic - 19 + np.asarray(mood.scale)[rng.integers(0, len(mood.scale), size=len(chord_starts))]
    chord_length = mood.chord_every_beats * ticks_per_beat

    score = symusic.Score(ticks_per_beat)
    score.tempos.append(symusic.Tempo(0, mood.tempo))
    track = symusic.Track(name=f"example {quadrant}", program=0)
    for start, pitch in zip(starts.tolist(), pitches.tolist(), strict=True):
        track.notes.append(symusic.Note(start, int(step * 0.9), int(pitch), mood.velocity))
    for start, root in zip(chord_starts.tolist(), roots.tolist(), strict=True):
        for offset in (0, mood.scale[2 % len(mood.scale)], 7):
            track.notes.append(
                symusic.Note(start, chord_length, int(root + offset), max(mood.velocity - 20, 30))
            )
    track.notes.sort(key=lambda note: (note.time, note.pitch))
    score.tracks.append(track)
    return score


def write_example_midi(
    path: str | os.PathLike, quadrant: str = "Q1", seconds: float = 16.0, seed: int = 0
) -> Path:
    """Write `example_score(...)` as a standard MIDI file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example_score(quadrant, seconds, seed).dump_midi(str(path))
    return path


__all__ = ["MOODS", "example_score", "write_example_midi"]
