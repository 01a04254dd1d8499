"""Tests of poolingvq/synthesis_poolingvq.py: MIDI -> 24 kHz mono audio with the General MIDI soundfont.

Every MIDI is written by the test itself with symusic.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from symusic import Note, Pedal, Score, Tempo, Track

from poolingvq import synthesis_poolingvq
from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.synthesis_poolingvq import default_soundfont_path, synthesize_midi

RATE = 24000
TICKS_PER_QUARTER = 480


def make_score(
    pitches: list[int],
    quarter_notes_each: float = 1.0,
    qpm: float = 120.0,
    program: int = 0,
    start_quarters: float = 0,
) -> Score:
    """One track of consecutive notes, each `quarter_notes_each` long, at `qpm` quarter notes per minute."""
    score = Score(TICKS_PER_QUARTER)
    score.tempos.append(Tempo(time=0, qpm=qpm))
    track = Track(name="piano", program=program)
    step = round(quarter_notes_each * TICKS_PER_QUARTER)
    start = round(start_quarters * TICKS_PER_QUARTER)
    for index, pitch in enumerate(pitches):
        track.notes.append(Note(time=start + index * step, duration=step, pitch=pitch, velocity=90))
    score.tracks.append(track)
    return score


def fundamental(waveform: np.ndarray, rate: int) -> float:
    """Frequency (Hz) of the lowest strong spectral peak (> 20 % of the largest) of a Hann-windowed clip."""
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    spectrum /= spectrum.max()
    is_peak = (spectrum[1:-1] > 0.2) & (spectrum[1:-1] >= spectrum[:-2]) & (spectrum[1:-1] >= spectrum[2:])
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[1 + np.flatnonzero(is_peak)[0]])


def test_default_soundfont_is_pretty_midis_general_midi_font() -> None:
    path = Path(default_soundfont_path())
    assert path.name == "TimGM6mb.sf2" and path.parent.name == "pretty_midi"
    assert path.read_bytes()[:4] == b"RIFF"


def test_renders_known_length_mono_float32_at_minus_1_dbfs(tmp_path: Path) -> None:
    path = tmp_path / "scale.mid"
    make_score([60, 62, 64, 65, 67, 69, 71, 72]).dump_midi(path)  # 8 quarter notes at 120 qpm: 4 s
    waveform = synthesize_midi(path)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(len(waveform) - 4 * RATE) < 0.05 * RATE
    assert np.abs(waveform).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    # Non-silent throughout: every half second carries sound.
    half_second_rms = np.sqrt((waveform[: 8 * RATE // 2].reshape(8, -1) ** 2).mean(axis=1))
    assert (half_second_rms > 1e-3).all()


def test_sample_rate_scales_the_length() -> None:
    score = make_score([60, 64, 67, 72])  # 2 s
    assert abs(len(synthesize_midi(score, sample_rate=16000)) - 2 * 16000) < 0.05 * 16000


@pytest.mark.parametrize("pitch", [45, 57, 69, 81])
def test_piano_notes_sound_at_their_pitch(pitch: int) -> None:
    # symusic 0.5.9 ignores SoundFont root-key overrides; without the module's retuning TimGM6mb's piano
    # played A4 near 1660 Hz instead of 440 Hz.
    waveform = synthesize_midi(make_score([pitch], quarter_notes_each=4))[:RATE]
    expected = 440 * 2 ** ((pitch - 69) / 12)
    semitones_off = 12 * np.log2(fundamental(waveform, RATE) / expected)
    assert abs(semitones_off) < 0.5, f"MIDI pitch {pitch} sounds {semitones_off:+.2f} semitones off"


def test_deterministic_and_the_same_for_path_bytes_and_score(tmp_path: Path) -> None:
    score = make_score([60, 64, 67, 72, 67, 64], quarter_notes_each=0.5)
    path = tmp_path / "arpeggio.mid"
    score.dump_midi(path)
    first = synthesize_midi(path)
    np.testing.assert_array_equal(synthesize_midi(path), first)
    np.testing.assert_array_equal(synthesize_midi(path.read_bytes()), first)
    np.testing.assert_array_equal(synthesize_midi(Score(path)), first)
    synthesis_poolingvq._load_synthesizer.cache_clear()  # a freshly loaded soundfont renders the same
    np.testing.assert_array_equal(synthesize_midi(str(path)), first)


def test_soundfont_is_loaded_once_per_rate() -> None:
    synthesis_poolingvq._load_synthesizer.cache_clear()
    score = make_score([60])
    for _ in range(3):
        synthesize_midi(score)
    synthesize_midi(score, sample_rate=16000)
    info = synthesis_poolingvq._load_synthesizer.cache_info()
    assert (info.misses, info.hits) == (2, 2)


def test_max_seconds_crops_the_score_and_the_audio() -> None:
    score = make_score([60, 62, 64, 65, 67, 69, 71, 72])  # 4 s
    assert len(synthesize_midi(score, max_seconds=1.5)) == round(1.5 * RATE)
    assert len(synthesize_midi(score, max_seconds=None)) == len(synthesize_midi(score))
    # An hour of notes, and a single note an hour long, render only the requested second.
    hour_of_notes = make_score([60, 64, 67] * 2400, qpm=120)
    assert len(synthesize_midi(hour_of_notes, max_seconds=1.0)) == RATE
    one_hour_note = make_score([60], quarter_notes_each=7200)
    assert len(synthesize_midi(one_hour_note, max_seconds=1.0)) == RATE


def test_notes_only_after_the_crop() -> None:
    late = make_score([60, 64], start_quarters=200)  # first note at 100 s
    with pytest.raises(PoolingVQInputError, match="no notes in its first 60 s"):
        synthesize_midi(late)
    assert len(synthesize_midi(late, max_seconds=None)) > 100 * RATE


def pedalled_score() -> Score:
    """Short notes under a sustain pedal held from 0 s to 2 s, one key struck twice, one note after it."""
    score = Score(TICKS_PER_QUARTER)  # no tempo event: MIDI's default 120 qpm, a quarter note is 0.5 s
    track = Track(name="piano", program=0)
    for start, pitch in [(0, 60), (480, 60), (240, 64), (3000, 67)]:
        track.notes.append(Note(time=start, duration=120, pitch=pitch, velocity=90))
    track.pedals.append(Pedal(time=0, duration=1920))
    score.tracks.append(track)
    return score


def test_sustain_pedal_holds_notes_until_it_is_lifted() -> None:
    score = pedalled_score()
    pedalled = synthesize_midi(score)
    dry = synthesize_midi(score, sustain_pedal=False)

    def rms(waveform: np.ndarray, start_s: float, end_s: float) -> float:
        return float(np.sqrt((waveform[round(start_s * RATE) : round(end_s * RATE)] ** 2).mean()))

    # Between 1.0 s and 1.5 s no note is written; only the pedal keeps the strings sounding.
    assert rms(pedalled, 1.0, 1.5) > 0.01
    assert rms(dry, 1.0, 1.5) < 1e-4
    assert score.tracks[0].notes[0].duration == 120  # the caller's score is left as it was


def test_sustain_pedal_stops_a_held_note_when_its_key_is_struck_again() -> None:
    score = pedalled_score().to("second")
    synthesis_poolingvq._hold_notes_under_sustain_pedal(score)
    spans = sorted((note.time, note.end, note.pitch) for note in score.tracks[0].notes)
    assert spans == [(0.0, 0.5, 60), (0.25, 2.0, 64), (0.5, 2.0, 60), (3.125, 3.25, 67)]
    # A track without pedals is left untouched.
    plain = make_score([60, 62]).to("second")
    before = plain.tracks[0].notes.numpy()
    synthesis_poolingvq._hold_notes_under_sustain_pedal(plain)
    np.testing.assert_array_equal(plain.tracks[0].notes.numpy()["duration"], before["duration"])


def test_midi_errors(tmp_path: Path) -> None:
    with pytest.raises(PoolingVQInputError, match="missing.mid: no such file"):
        synthesize_midi(tmp_path / "missing.mid")
    empty = tmp_path / "empty.mid"
    empty.touch()
    with pytest.raises(PoolingVQInputError, match="empty.mid: the MIDI file is empty"):
        synthesize_midi(empty)
    text = tmp_path / "notes.mid"
    text.write_text("this is not a MIDI file at all\n")
    with pytest.raises(PoolingVQInputError, match="notes.mid: is not a MIDI file"):
        synthesize_midi(text)
    with pytest.raises(PoolingVQInputError, match="not a MIDI file"):
        synthesize_midi(b"RIFF" + bytes(60))
    with pytest.raises(PoolingVQInputError, match="empty"):
        synthesize_midi(b"")
    no_notes = tmp_path / "no_notes.mid"
    Score(TICKS_PER_QUARTER).dump_midi(no_notes)
    with pytest.raises(PoolingVQInputError, match="no_notes.mid: the MIDI has no notes"):
        synthesize_midi(no_notes)
    truncated = make_score([60, 62]).dumps_midi()[:20]
    with pytest.raises(PoolingVQInputError, match="truncated MIDI file"):
        synthesize_midi(truncated)
    with pytest.raises(PoolingVQInputError, match="must be a path"):
        synthesize_midi(12345)


def test_midi_is_checked_before_it_is_parsed(tmp_path: Path) -> None:
    # Issue 11, failure 5: MIDI-only prediction synthesizes first, and synthesis parsed the bytes before any
    # check. It now reads with the tokenizer's hardened reader: the size cap holds before a byte is read...
    huge = tmp_path / "huge.mid"
    with open(huge, "wb") as file:
        file.write(b"MThd")
        file.truncate(100 * 2**20)  # sparse: 100 MB on paper, nothing on disk
    with pytest.raises(PoolingVQInputError, match="huge.mid: is 100.0 MB, more than the 64 MB"):
        synthesize_midi(huge)
    # ... and a truncated file gives one clear message, the same every time, before symusic sees it.
    truncated = tmp_path / "cut.mid"
    truncated.write_bytes(make_score(list(range(48, 96))).dumps_midi()[:-40])
    messages = set()
    for _ in range(3):
        with pytest.raises(PoolingVQInputError, match="cut.mid: is a truncated MIDI file") as error:
            synthesize_midi(truncated)
        messages.add(str(error.value))
    assert len(messages) == 1


def test_argument_errors() -> None:
    score = make_score([60])
    with pytest.raises(PoolingVQInputError, match="outside"):
        synthesize_midi(score, sample_rate=500)
    with pytest.raises(PoolingVQInputError, match="integer"):
        synthesize_midi(score, sample_rate=24000.0)
    with pytest.raises(PoolingVQInputError, match="max_seconds"):
        synthesize_midi(score, max_seconds=-1)


def test_soundfont_errors(tmp_path: Path) -> None:
    score = make_score([60])
    with pytest.raises(PoolingVQInputError, match="nope.sf2: no such soundfont"):
        synthesize_midi(score, soundfont=tmp_path / "nope.sf2")
    text = tmp_path / "text.sf2"
    text.write_text("not a soundfont")
    with pytest.raises(PoolingVQInputError, match="text.sf2: not a SoundFont"):
        synthesize_midi(score, soundfont=text)
    truncated = tmp_path / "truncated.sf2"
    truncated.write_bytes(Path(default_soundfont_path()).read_bytes()[:5000])
    with pytest.raises(PoolingVQInputError, match="truncated.sf2: not a readable SoundFont"):
        synthesize_midi(score, soundfont=truncated)


def test_missing_pretty_midi_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthesis_poolingvq.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PoolingVQInputError, match="pip install pretty_midi"):
        default_soundfont_path()


def test_retuned_soundfont_is_written_atomically_and_leftovers_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 11: the retuned copy goes through the package's one atomic writer; a writer killed mid-write left
    # a `.partial` file there forever, its `.tmp` now names its pid and is removed once that process is gone.
    from poolingvq import files_poolingvq

    monkeypatch.setattr(synthesis_poolingvq.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = tmp_path / f"poolingvq-soundfonts-{os.getuid()}"
    folder.mkdir()
    dead_pid = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )
    leftover = folder / f".x-TimGM6mb.sf2.{dead_pid}.abc.{files_poolingvq.HOST}.tmp"
    leftover.write_bytes(b"half a soundfont")
    path = Path(synthesis_poolingvq._retuned_copy(default_soundfont_path()))
    assert path.parent == folder and path.read_bytes()[:4] == b"RIFF"
    assert sorted(p.name for p in folder.iterdir()) == [path.name]


REMOTE_SYNTHESIS = """
import importlib.abc, sys
class NoPoolingVQ(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "poolingvq" or name.startswith("poolingvq."):
            raise ImportError("poolingvq is blocked in this process")
sys.meta_path.insert(0, NoPoolingVQ())
from transformers import AutoProcessor
processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
audio = processor.synthesize(sys.argv[2])
assert audio.ndim == 1 and abs(audio).max() > 0.01, audio.shape
try:
    processor.synthesize(sys.argv[3])
except ValueError as error:
    print(error)
assert "poolingvq" not in sys.modules
"""


def test_saved_processor_synthesizes_with_its_sibling_reader_and_writer(tmp_path: Path) -> None:
    # synthesis_poolingvq.py is remote code: the hardened reader (tokenization_poolingvq.py) and the atomic
    # writer (files_poolingvq.py) it now uses must travel with it into every saved folder, and work there alone.
    from poolingvq.feature_extraction_poolingvq import PoolingVQFeatureExtractor
    from poolingvq.processing_poolingvq import PoolingVQProcessor

    folder = tmp_path / "processor"
    PoolingVQProcessor(PoolingVQFeatureExtractor(max_seconds=2.0)).save_pretrained(folder)
    assert {"files_poolingvq.py", "tokenization_poolingvq.py", "synthesis_poolingvq.py"} <= {
        path.name for path in folder.iterdir()
    }
    midi, cut = tmp_path / "piece.mid", tmp_path / "cut.mid"
    make_score([60, 64, 67]).dump_midi(midi)
    cut.write_bytes(midi.read_bytes()[:-10])
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SYNTHESIS)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(folder), str(midi), str(cut)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "cut.mid: is a truncated MIDI file" in result.stdout
