"""MIDI -> compound-word tokens: bit-exact with MIDI-BERT's own EMOPIA arrays, each rule on hand-made MIDIs,
every kind of bad input, a 100,000-note piece, random MIDIs and random bytes, and the CLI."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import symusic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_data import DATA_DIR, needs_data

from poolingvq import tokenization_poolingvq as tokenization
from poolingvq.cli import main
from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.tokenization_poolingvq import CP_VOCAB_SIZES, PAD_TOKEN, CPMidiTokenizer

# (onset tick, duration ticks, pitch)
Note = tuple[int, int, int]


def make_score(
    *tracks: list[Note], tpq: int = 480, drum_tracks: tuple[list[Note], ...] = ()
) -> symusic.Score:
    """A tick-time Score with one piano track per `tracks` entry, then one drum track per `drum_tracks` entry."""
    score = symusic.Score(tpq)
    for notes, is_drum in [(n, False) for n in tracks] + [(n, True) for n in drum_tracks]:
        track = symusic.Track("drums" if is_drum else "piano", program=0, is_drum=is_drum)
        for onset, duration, pitch in notes:
            track.notes.append(symusic.Note(onset, duration, pitch, 80))
        score.tracks.append(track)
    return score


def make_midi(*tracks: list[Note], tpq: int = 480, drum_tracks: tuple[list[Note], ...] = ()) -> bytes:
    return make_score(*tracks, tpq=tpq, drum_tracks=drum_tracks).dumps_midi()


def real_tokens(rows: np.ndarray) -> np.ndarray:
    """The non-padding tokens of [N, L, 4] rows, in order: [T, 4]."""
    return rows.reshape(-1, 4)[rows.reshape(-1, 4)[:, 0] != 2]


def tokens_of(*tracks: list[Note], mode: str = "midibert", tpq: int = 480) -> np.ndarray:
    return real_tokens(CPMidiTokenizer(mode)(make_midi(*tracks, tpq=tpq)))


#: A far-away last note keeps MIDI-BERT's end-of-piece grid quirk out of the tests of the other rules.
FAR_LAST_NOTE: Note = (40 * 1920, 480, 60)


# --- 1. bit-exact reproduction of MIDI-BERT's EMOPIA test array ---------------------------------------------


@needs_data
def test_reproduces_midibert_emopia_test_array_bit_for_bit():
    reference = np.load(DATA_DIR / "midibert" / "emopia_test.npy")
    labels = np.load(DATA_DIR / "midibert" / "emopia_test_ans.npy")
    listed = (DATA_DIR / "midibert" / "emopia_test_files.txt").read_text().split()
    assert reference.shape == (109, 512, 4) and len(listed) == 107

    tokenizer = CPMidiTokenizer("midibert")
    rows_by_file = {name: tokenizer(DATA_DIR / "emopia" / "midis" / name) for name in listed}
    # The array's file order is not the list's order (MIDI-BERT globbed its folders), so walk the array and
    # find, at each row, the file whose rows start there; every listed file must be used exactly once.
    file_starting_with = {rows[0].tobytes(): name for name, rows in rows_by_file.items()}
    assert len(file_starting_with) == len(listed)
    row, used = 0, []
    while row < len(reference):
        name = file_starting_with.get(reference[row].tobytes())
        assert name is not None, f"reference row {row} is not the first row of any listed file"
        rows = rows_by_file[name]
        np.testing.assert_array_equal(reference[row : row + len(rows)], rows, err_msg=name)
        assert (labels[row : row + len(rows)] == int(name[1]) - 1).all(), "label of Q1..Q4 in the name"
        used.append(name)
        row += len(rows)
    assert sorted(used) == sorted(listed)


@needs_data
def test_emopia_files_read_by_symusic_as_midibert_assumes():
    """EMOPIA: 384 ticks a beat (read as 480 in midibert mode), one non-drum track, 4/4."""
    for path in sorted((DATA_DIR / "emopia" / "midis").glob("*.mid"))[:50]:
        score = symusic.Score(path)
        assert score.tpq == 384
        assert [track.is_drum for track in score.tracks] == [False]
        assert [(ts.numerator, ts.denominator) for ts in score.time_signatures] == [(4, 4)]


# --- 2. each rule on hand-made MIDIs ------------------------------------------------------------------------


def test_onsets_snap_to_nearest_sixteenth_ties_to_the_earlier():
    onsets = [0, 59, 60, 61, 179, 180, 181, 300]
    tokens = tokens_of([(t, 240, 60 + i) for i, t in enumerate(onsets)] + [FAR_LAST_NOTE])
    assert tokens[:8, 1].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_position_is_the_sixteenth_in_its_bar_and_bars_start_with_new():
    notes = [(0, 120, 60), (120, 120, 62), (1800, 120, 64), (1920, 120, 65), (1920 + 960, 120, 67)]
    tokens = tokens_of(notes + [FAR_LAST_NOTE])
    assert tokens[:5, 1].tolist() == [0, 1, 15, 0, 8]
    assert tokens[:5, 0].tolist() == [0, 1, 1, 0, 1]  # New, Continue, Continue, New (bar 2), Continue


def test_bars_without_notes_are_skipped():
    tokens = tokens_of([(0, 480, 60), (5 * 1920 + 240, 480, 62), (8 * 1920, 480, 64), FAR_LAST_NOTE])
    assert tokens[:3].tolist() == [[0, 0, 60 - 22, 7], [0, 2, 62 - 22, 7], [0, 0, 64 - 22, 7]]


def test_duration_is_the_nearest_multiple_of_60_ties_to_the_shorter():
    durations = [0, 30, 60, 89, 90, 91, 480, 3810, 3840, 10_000]
    tokens = tokens_of([(i * 1920, d, 60) for i, d in enumerate(durations)] + [(40 * 1920, 480, 60)])
    assert tokens[: len(durations), 3].tolist() == [0, 0, 0, 0, 0, 1, 7, 62, 63, 63]


def test_pitches_outside_22_to_107_are_left_out():
    tokens = tokens_of([(0, 480, 21), (0, 480, 22), (120, 480, 107), (120, 480, 108), FAR_LAST_NOTE])
    assert tokens[:2, 2].tolist() == [0, 85]
    assert len(tokens) == 3


def test_simultaneous_notes_come_by_original_onset_then_track_then_pitch():
    track_a = [(0, 480, 70), (0, 480, 50), (130, 480, 40), FAR_LAST_NOTE]
    track_b = [(0, 480, 60), (110, 480, 80)]
    tokens = tokens_of(track_a, track_b)
    # 50, 70 (track 0, low to high), 60 (track 1); then 80 (onset 110) before 40 (onset 130), both at 120.
    assert (tokens[:5, 2] + 22).tolist() == [50, 70, 60, 80, 40]
    assert tokens[3:5, 1].tolist() == [1, 1]


def test_rows_are_512_tokens_and_the_last_row_is_padded():
    tokenizer = CPMidiTokenizer()
    for count, expected_rows in [(1, 1), (511, 1), (512, 1), (513, 2), (600, 2)]:
        rows = tokenizer(make_midi([(i * 120, 120, 60) for i in range(count)]))
        assert rows.shape == (expected_rows, 512, 4) and rows.dtype == np.int64
        flat = rows.reshape(-1, 4)
        assert (flat[count:] == PAD_TOKEN).all() and (flat[:count, 0] != 2).all()
    mask = tokenizer.attention_mask(rows)
    assert mask.shape == (2, 512) and mask.dtype == bool and mask.sum() == 600
    assert tokenizer(make_midi([(i * 120, 120, 60) for i in range(1200)]), max_rows=2).shape == (2, 512, 4)


def test_midibert_mode_reads_ticks_as_480_per_beat_whatever_the_header_says():
    notes = [(0, 384, 60), (96, 192, 62), (384, 96, 64), (1536, 384, 65), FAR_LAST_NOTE]
    at_384 = tokens_of(notes, tpq=384)
    np.testing.assert_array_equal(at_384, tokens_of(notes, tpq=480))
    assert at_384[:4, 1].tolist() == [0, 1, 3, 13]  # 96 ticks -> grid point 1 (120), 384 -> 3, 1536 -> 13
    assert at_384[:4, 3].tolist() == [5, 2, 1, 5]  # 384 ticks -> 360 (bin 5), 192 -> 180 (2), 96 -> 120 (1)


def test_rescaled_mode_on_96_ticks_per_beat():
    # At 96 ticks a beat: a sixteenth is 24 ticks, a bar 384; durations scale by 5 to the 480 grid.
    notes = [(0, 24, 60), (24, 96, 62), (37, 12, 64), (96, 192, 65), (384 + 72, 384, 67), (3 * 384, 18, 69)]
    tokens = tokens_of(notes, mode="rescaled", tpq=96)
    assert tokens.tolist() == [
        [0, 0, 60 - 22, 1],  # 24 ticks = 120 at 480
        [1, 1, 62 - 22, 7],  # 96 = a beat = 480
        [1, 2, 64 - 22, 0],  # onset 37 = 1.54 sixteenths -> 2; 12 ticks = 60
        [1, 4, 65 - 22, 15],  # 192 = 960
        [0, 3, 67 - 22, 31],  # bar 1, sixteenth 3; 384 = 1920
        [0, 0, 69 - 22, 0],  # bar 3 (bar 2 is empty); 18 ticks = 90 at 480, a tie -> 60
    ]
    # midibert mode reads the same ticks as if at 480 a beat: everything lands in the first bar.
    assert tokens_of(notes, mode="midibert", tpq=96)[:, 0].tolist() == [0, 1, 1, 1, 1, 1]


def test_midibert_grid_stops_one_step_short_of_the_last_onset():
    notes = [(0, 480, 60), (1070, 480, 62)]
    assert tokens_of(notes, mode="midibert")[1, 1] == 8  # snapped to 960, not the nearer 1080
    assert tokens_of(notes, mode="rescaled")[1, 1] == 9  # 1080


def test_midibert_drops_notes_on_the_downbeat_after_a_zero_length_last_note():
    # The last onset 1930 snaps to 1920, where the piece (ending at the last note's end, 1920) has no bar.
    notes = [(0, 480, 60), (1925, 480, 64), (1930, 0, 67)]
    assert tokens_of(notes, mode="midibert").tolist() == [[0, 0, 60 - 22, 7]]
    assert tokens_of(notes, mode="rescaled")[:, 2].tolist() == [60 - 22, 64 - 22, 67 - 22]


def test_drum_tracks_are_left_out_in_both_modes():
    piano = [(0, 480, 60), (480, 480, 64)]
    drums = [(0, 60, 36), (240, 60, 38), (480, 60, 42)]
    for mode in ("midibert", "rescaled"):
        tokenizer = CPMidiTokenizer(mode)
        with_drums = tokenizer(make_midi(piano, drum_tracks=(drums,)))
        np.testing.assert_array_equal(with_drums, tokenizer(make_midi(piano)))


def test_paths_bytes_and_scores_give_the_same_rows(tmp_path):
    notes = [(i * 100, 200, 40 + i % 40) for i in range(50)]
    data = make_midi(notes)
    (tmp_path / "a.mid").write_bytes(data)
    tokenizer = CPMidiTokenizer()
    expected = tokenizer(data)
    for midi in (tmp_path / "a.mid", str(tmp_path / "a.mid"), bytearray(data), symusic.Score.from_midi(data)):
        np.testing.assert_array_equal(tokenizer(midi), expected)
    np.testing.assert_array_equal(tokenizer(symusic.Score.from_midi(data).to("quarter")), expected)


def test_settings_round_trip_and_pad_token():
    tokenizer = CPMidiTokenizer("rescaled", max_length=128)
    again = CPMidiTokenizer.from_dict(tokenizer.to_dict())
    assert (again.mode, again.max_length) == ("rescaled", 128)
    assert again(make_midi([(0, 480, 60)])).shape == (1, 128, 4)
    assert tokenizer.pad_token.tolist() == [2, 16, 86, 64] and tokenizer.pad_token.dtype == np.int64
    with pytest.raises(ValueError, match="mode"):
        CPMidiTokenizer("remi")
    with pytest.raises(ValueError, match="max_length"):
        CPMidiTokenizer(max_length=0)
    with pytest.raises(ValueError, match="unknown"):
        CPMidiTokenizer.from_dict({"mode": "midibert", "vocab": 3})


# --- 3. bad input -------------------------------------------------------------------------------------------


def assert_input_error(midi, *words: str, source: str | None = None) -> None:
    with pytest.raises(PoolingVQInputError) as caught:
        CPMidiTokenizer()(midi)
    message = str(caught.value)
    if source is not None:
        assert source in message
    for word in words:
        assert word in message, message


def test_missing_empty_and_directory_paths(tmp_path):
    assert_input_error(tmp_path / "nope.mid", "no such file", source=str(tmp_path / "nope.mid"))
    (tmp_path / "empty.mid").write_bytes(b"")
    assert_input_error(tmp_path / "empty.mid", "empty", source=str(tmp_path / "empty.mid"))
    assert_input_error(tmp_path, "not a file", source=str(tmp_path))
    assert_input_error(b"", "empty")


def test_not_a_midi(tmp_path):
    (tmp_path / "notes.txt").write_text("C4 E4 G4, a chord\n" * 20)
    assert_input_error(tmp_path / "notes.txt", "not a MIDI file", source=str(tmp_path / "notes.txt"))
    assert_input_error(np.random.default_rng(0).bytes(3000), "not a MIDI file")


def test_truncated_midi(tmp_path):
    data = make_midi([(i * 120, 120, 60 + i % 12) for i in range(200)], [(0, 480, 40)])
    for cut in (10, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.mid").write_bytes(data[:cut])
        assert_input_error(tmp_path / "cut.mid", "truncated", source=str(tmp_path / "cut.mid"))
    # Cut exactly after a whole chunk: the header still announces more tracks.
    header_and_first_track = 14 + 8 + struct.unpack(">I", data[18:22])[0]
    assert_input_error(data[:header_and_first_track], "truncated", "announces")


def test_corrupt_events_are_an_input_error_not_a_crash():
    data = bytearray(make_midi([(i * 120, 120, 60) for i in range(20)]))
    data[40:60] = b"\xf7\xff" * 10  # a SysEx and meta events with nonsense lengths, inside the track
    with pytest.raises(PoolingVQInputError):
        CPMidiTokenizer()(bytes(data))


def test_smpte_division_and_zero_ticks_per_beat():
    data = bytearray(make_midi([(0, 480, 60)]))
    data[12:14] = b"\xe7\x28"  # -25 fps, 40 ticks a frame
    assert_input_error(bytes(data), "SMPTE")
    data[12:14] = b"\x00\x00"
    assert_input_error(bytes(data), "0 ticks per beat")


def test_no_notes_drums_only_and_no_pitch_in_range(tmp_path):
    (tmp_path / "silent.mid").write_bytes(make_midi([]))
    assert_input_error(tmp_path / "silent.mid", "no notes", source=str(tmp_path / "silent.mid"))
    assert_input_error(make_midi(drum_tracks=([(0, 60, 36), (240, 60, 38)],)), "only drum notes")
    assert_input_error(make_midi([(0, 480, 10), (480, 480, 120)]), "pitch range")
    assert_input_error(make_score([]), "no notes", source="ScoreTick")


def test_files_over_the_size_limit(tmp_path, monkeypatch):
    huge = tmp_path / "huge.mid"
    with huge.open("wb") as file:  # a sparse file: no disk space, just a large size
        file.write(b"MThd")
        file.truncate(tokenization.MAX_MIDI_BYTES + 1)
    assert_input_error(huge, "64 MB", source=str(huge))
    monkeypatch.setattr(tokenization, "MAX_MIDI_BYTES", 100)
    assert_input_error(make_midi([(i * 120, 120, 60) for i in range(50)]), "MB")


def test_wrong_argument_types():
    with pytest.raises(TypeError):
        CPMidiTokenizer()(12345)
    with pytest.raises(ValueError, match="max_rows"):
        CPMidiTokenizer()(make_midi([(0, 480, 60)]), max_rows=0)
    with pytest.raises(PoolingVQInputError):
        CPMidiTokenizer.attention_mask(np.zeros((2, 512, 3), dtype=np.int64))


# --- 4. a large piece ---------------------------------------------------------------------------------------


def test_100k_notes_tokenize():
    rng = np.random.default_rng(0)
    count = 100_000
    track = symusic.Track("piano")
    track.notes = symusic.Note.from_numpy(
        np.sort(rng.integers(0, count * 100, count)).astype(np.int32),
        rng.integers(1, 2000, count).astype(np.int32),
        rng.integers(22, 108, count).astype(np.int8),
        np.full(count, 80, dtype=np.int8),
    )
    score = symusic.Score(480)
    score.tracks.append(track)
    rows = CPMidiTokenizer()(score.dumps_midi())
    assert rows.shape == (-(-count // 512), 512, 4)
    assert CPMidiTokenizer().attention_mask(rows).sum() == count


# --- 5. random MIDIs and random bytes: a valid array or PoolingVQInputError, nothing else -------------------


def assert_valid_rows(rows: np.ndarray, max_length: int = 512) -> None:
    assert rows.dtype == np.int64 and rows.ndim == 3 and rows.shape[1:] == (max_length, 4) and len(rows) >= 1
    flat = rows.reshape(-1, 4)
    is_pad = flat[:, 0] == 2
    assert (flat[is_pad] == PAD_TOKEN).all()
    num_real = int((~is_pad).sum())
    assert num_real >= 1 and not is_pad[:num_real].any(), "padding only after the last real token"
    assert len(rows) == -(-num_real // max_length)
    real = flat[:num_real]
    assert real[0, 0] == 0, "a piece starts with a new bar"
    for column, vocab_size in enumerate(CP_VOCAB_SIZES):
        assert real[:, column].min() >= 0 and real[:, column].max() < vocab_size - 2  # no PAD, no MASK


notes_strategy = st.lists(
    st.tuples(st.integers(0, 40_000), st.integers(0, 6_000), st.integers(0, 127)), max_size=60
)
tracks_strategy = st.lists(st.tuples(notes_strategy, st.booleans()), max_size=4)
tpq_strategy = st.one_of(st.sampled_from([96, 120, 384, 480, 960]), st.integers(1, 32767))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tracks=tracks_strategy, tpq=tpq_strategy)
def test_random_midi_structures(tracks, tpq):
    score = symusic.Score(tpq)
    usable = 0
    for notes, is_drum in tracks:
        track = symusic.Track("t", program=0, is_drum=is_drum)
        for onset, duration, pitch in notes:
            track.notes.append(symusic.Note(onset, duration, pitch, 64))
        score.tracks.append(track)
        usable += 0 if is_drum else sum(22 <= pitch <= 107 for _, _, pitch in notes)
    data = score.dumps_midi()
    for mode in ("midibert", "rescaled"):
        try:
            rows = CPMidiTokenizer(mode)(data)
        except PoolingVQInputError:
            assert mode == "midibert" or usable == 0
            continue
        assert_valid_rows(rows)
        num_real = int(CPMidiTokenizer.attention_mask(rows).sum())
        # rescaled mode keeps every pitched note in range; midibert mode may only drop some at the very end
        assert num_real == usable if mode == "rescaled" else num_real <= usable


def tokenize_or_input_error(data: bytes) -> None:
    for mode in ("midibert", "rescaled"):
        try:
            rows = CPMidiTokenizer(mode)(data)
        except PoolingVQInputError:
            continue
        assert_valid_rows(rows)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000))
def test_random_bytes(data):
    tokenize_or_input_error(data)
    tokenize_or_input_error(b"MThd\x00\x00\x00\x06" + data)


SEED_MIDI = make_midi(
    [(i * 97, 150 + i, 30 + i % 70) for i in range(80)], [(i * 240, 480, 50) for i in range(20)], tpq=384
)


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SEED_MIDI) - 1), st.integers(0, 255)), min_size=1, max_size=12
    ),
    cut=st.integers(14, len(SEED_MIDI)),
)
def test_corrupted_midi_bytes(edits, cut):
    """Byte flips and truncations of a valid MIDI (these crashed symusic's parser before the guards)."""
    data = bytearray(SEED_MIDI)
    for index, value in edits:
        data[index] = value
    tokenize_or_input_error(bytes(data))
    tokenize_or_input_error(bytes(data[:cut]))


# --- 6. the CLI ---------------------------------------------------------------------------------------------


def test_cli_writes_all_rows_of_all_files_in_order(tmp_path, capsys):
    first = tmp_path / "first.mid"
    second = tmp_path / "second.mid"
    first.write_bytes(make_midi([(i * 120, 120, 60) for i in range(700)]))
    second.write_bytes(make_midi([(0, 96, 40), (96, 96, 50)], tpq=96))
    out = tmp_path / "out" / "tokens.npy"
    for mode in ("midibert", "rescaled"):
        assert main(["tokenize-midi", str(first), str(second), "--mode", mode, "--out", str(out)]) == 0
        written = np.load(out)
        tokenizer = CPMidiTokenizer(mode)
        np.testing.assert_array_equal(written, np.concatenate([tokenizer(first), tokenizer(second)]))
        assert written.shape == (3, 512, 4) and written.dtype == np.int64

    assert main(["tokenize-midi", str(first), str(tmp_path / "missing.mid"), "--out", str(out)]) == 2
    assert "missing.mid: no such file" in capsys.readouterr().err


def test_cli_names_the_file_it_really_writes(tmp_path, capsys):
    # Issue 11, failure 6: `--out DIR` wrote DIR.npy (numpy appends the suffix) but printed DIR.
    midi = tmp_path / "a.mid"
    midi.write_bytes(make_midi([(i * 120, 120, 60) for i in range(10)]))
    assert main(["tokenize-midi", str(midi), "--out", str(tmp_path / "tokens")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(str(tmp_path / "tokens.npy"))
    assert np.load(tmp_path / "tokens.npy").shape == (1, 512, 4)
    assert not (tmp_path / "tokens").exists() and not list(tmp_path.glob(".*"))  # no temporary left behind
    (tmp_path / "folder").mkdir()
    assert main(["tokenize-midi", str(midi), "--out", str(tmp_path / "folder")]) == 2
    assert "folder: is a folder: --out names the .npy file to write" in capsys.readouterr().err


def test_a_header_longer_than_the_file_is_refused_before_parsing():
    assert_input_error(b"MThd but not really a MIDI file", "not a readable MIDI file", "header claims")
