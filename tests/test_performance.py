"""performance_statistics: what a MIDI says about how a piece is played, in real time and in any key."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
from shared_data import DATA_DIR, needs_emopia

from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.performance_poolingvq import (
    NUM_STATISTICS,
    STATISTIC_NAMES,
    key_correlations,
    performance_statistics,
)

EMOPIA_DIR = DATA_DIR / "emopia"

C_MAJOR = (60, 64, 67)
A_MINOR = (57, 60, 64)


def chords_score(
    chords: list[tuple[int, ...]],
    *,
    tpq: int = 480,
    beats_per_chord: float = 1.0,
    qpm: float = 120.0,
    velocity: int = 80,
    transpose: int = 0,
    pedal: tuple[float, float] | None = None,
) -> symusic.Score:
    """One track of block chords, one every `beats_per_chord` beats at `qpm`; `pedal`: (down, up) in beats."""
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, qpm))
    track = symusic.Track("piano")
    step = round(beats_per_chord * tpq)
    for index, chord in enumerate(chords):
        for pitch in chord:
            track.notes.append(symusic.Note(index * step, step, pitch + transpose, velocity))
    if pedal is not None:
        track.controls.append(symusic.ControlChange(round(pedal[0] * tpq), 64, 127))
        track.controls.append(symusic.ControlChange(round(pedal[1] * tpq), 64, 0))
    score.tracks.append(track)
    return score


def stat(statistics: np.ndarray, name: str) -> float:
    return float(statistics[STATISTIC_NAMES.index(name)])


def test_one_named_finite_vector_per_piece():
    statistics = performance_statistics(chords_score([C_MAJOR, A_MINOR] * 8))
    assert statistics.shape == (NUM_STATISTICS,) == (len(STATISTIC_NAMES),)
    assert statistics.dtype == np.float32 and np.isfinite(statistics).all()
    assert len(set(STATISTIC_NAMES)) == NUM_STATISTICS
    degrees = [stat(statistics, f"scale_degree_{d}") for d in range(12)]
    assert sum(degrees) == pytest.approx(1.0, abs=1e-5)


def test_notes_per_second_are_read_in_real_time_whatever_the_tempo_or_resolution():
    """The same performance written at 60 bpm with half the beats per chord, or at another resolution, is the same
    performance: CP tokens (positions in beats) would tell these apart, and miss that the third one is faster."""
    base = performance_statistics(chords_score([C_MAJOR] * 16, qpm=120, beats_per_chord=1.0))
    same = performance_statistics(chords_score([C_MAJOR] * 16, qpm=60, beats_per_chord=0.5, tpq=96))
    np.testing.assert_allclose(same, base, rtol=1e-4, atol=1e-5)
    faster = performance_statistics(chords_score([C_MAJOR] * 16, qpm=180, beats_per_chord=1.0))
    assert stat(base, "notes_per_second") == pytest.approx(6.0, rel=1e-3)  # 3 notes every half second
    assert stat(faster, "notes_per_second") == pytest.approx(1.5 * stat(base, "notes_per_second"), rel=1e-3)


def test_velocity_is_heard():
    soft = performance_statistics(chords_score([C_MAJOR] * 8, velocity=40))
    loud = performance_statistics(chords_score([C_MAJOR] * 8, velocity=100))
    assert stat(soft, "velocity_mean") == pytest.approx(40 / 127, rel=1e-4)
    assert stat(loud, "velocity_mean") == pytest.approx(100 / 127, rel=1e-4)


def test_mode_major_against_minor_and_transposition():
    major = performance_statistics(chords_score([C_MAJOR, (65, 69, 72), (67, 71, 74), C_MAJOR] * 4))
    minor = performance_statistics(chords_score([A_MINOR, (62, 65, 69), (64, 68, 71), A_MINOR] * 4))
    assert stat(major, "major_minus_minor") > 0 > stat(minor, "major_minus_minor")
    assert stat(major, "window_major_share") == 1.0 and stat(minor, "window_major_share") == 0.0
    # a tone up: the same piece to a listener; scale degrees, mode and intervals do not move
    up = performance_statistics(chords_score([C_MAJOR, (65, 69, 72), (67, 71, 74), C_MAJOR] * 4, transpose=2))
    keep = [i for i, name in enumerate(STATISTIC_NAMES) if not name.startswith("pitch_")]
    np.testing.assert_allclose(up[keep], major[keep], rtol=1e-5, atol=1e-6)
    assert stat(up, "pitch_mean") == pytest.approx(stat(major, "pitch_mean") + 2 / 127, rel=1e-5)


def test_chord_intervals_and_key_correlations():
    statistics = performance_statistics(chords_score([C_MAJOR] * 4))
    classes = [stat(statistics, f"chord_interval_class_{i}") for i in range(1, 7)]
    # C-E (4), E-G (3), C-G (7 -> class 5): one pair of each
    assert classes == pytest.approx([0, 0, 1 / 3, 1 / 3, 1 / 3, 0])
    assert key_correlations(np.ones((1, 12))).tolist() == [[0.0] * 24]  # a flat histogram has no key
    histogram = np.zeros((1, 12))
    histogram[0, [0, 4, 7]] = 1
    assert int(key_correlations(histogram).argmax()) == 0  # C major


def test_sustain_pedal_share():
    piece = chords_score([C_MAJOR] * 8, pedal=(0.0, 4.0))  # 8 beats, pedal down for the first 4
    assert stat(performance_statistics(piece), "sustain_pedal_share") == pytest.approx(0.5, rel=1e-3)
    assert stat(performance_statistics(chords_score([C_MAJOR] * 8)), "sustain_pedal_share") == 0.0


def test_bad_midi_is_an_input_error(tmp_path):
    drums = symusic.Score(480)
    track = symusic.Track("drums", is_drum=True)
    track.notes.append(symusic.Note(0, 480, 36, 100))
    drums.tracks.append(track)
    with pytest.raises(PoolingVQInputError, match="no pitched notes"):
        performance_statistics(drums)
    with pytest.raises(PoolingVQInputError):
        performance_statistics(b"MThd not really a midi file")
    with pytest.raises(PoolingVQInputError):
        performance_statistics(tmp_path / "missing.mid")
    # a note two billion ticks late at 1 bpm: refused by its length, not by the memory its windows would take
    absurd = chords_score([C_MAJOR], qpm=1.0)
    absurd.tracks[0].notes.append(symusic.Note(2**31 - 10_000, 480, 60, 80))
    with pytest.raises(PoolingVQInputError, match="hours"):
        performance_statistics(absurd)


@needs_emopia
def test_emopia_arousal_is_in_the_statistics():
    """On real clips the plainest cues of arousal come out as the data says: Q1/Q2 louder and denser than Q3/Q4."""
    files = sorted((EMOPIA_DIR / "midis").glob("*.mid"))
    by_quadrant = {q: [p for p in files if p.name.startswith(q)][:20] for q in ("Q1", "Q2", "Q3", "Q4")}
    means = {
        q: np.stack([performance_statistics(p) for p in paths]).mean(0) for q, paths in by_quadrant.items()
    }
    for high in ("Q1", "Q2"):
        for low in ("Q3", "Q4"):
            assert stat(means[high], "velocity_mean") > stat(means[low], "velocity_mean")
            assert stat(means[high], "notes_per_second") > stat(means[low], "notes_per_second")
