"""MIDI -> MIDI-BERT compound-word (CP) tokens.

Remote code: copied flat into every saved model folder; imports only numpy, symusic and its own siblings.

A CP token is one note, a row of four class indices `[Bar, Position, Pitch, Duration]` in MIDI-BERT's
dictionary (`cp_dictionary.json`): Bar New 0 / Continue 1 / PAD 2; Position 0..15 (the note's sixteenth in
its 4/4 bar); Pitch 0..85 (MIDI pitch 22..107); Duration 0..63 (the nearest of 60, 120, ..., 3840 ticks at
480 ticks per beat). A piece becomes rows of `max_length` tokens, the last row padded with `[2, 16, 86, 64]`.

Two modes:
- `"midibert"` reproduces, bit for bit, the tokens MIDI-BERT's pre-trained and fine-tuned weights saw
  (checked against MIDI-BERT's own EMOPIA arrays), quirks included: ticks are read as if every file had
  480 ticks per beat whatever its header says (EMOPIA's 384 are not rescaled), the onset grid stops one
  step short of the last onset, and notes that start exactly on the downbeat after the last note's end
  are dropped.
- `"rescaled"` is the musically correct grid: each file's ticks per beat are rescaled to 480 first, and
  none of those quirks; for models trained from scratch.

Both modes merge the notes of every track, leave drum tracks out (they carry no pitch) and leave out notes
outside MIDI-BERT's pitch range 22..107 (its dictionary has no word for them; MIDI-BERT itself would stop
with a KeyError). 4/4 is assumed throughout, as MIDI-BERT does.
"""

from __future__ import annotations

import argparse
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import symusic

from .errors_poolingvq import PoolingVQInputError
from .files_poolingvq import atomic_path

TOKENIZER_MODES: tuple[str, ...] = ("midibert", "rescaled")

BAR_NEW, BAR_CONTINUE, BAR_PAD = 0, 1, 2
#: The padding row `[Bar, Position, Pitch, Duration]` of MIDI-BERT's dictionary.
PAD_TOKEN: tuple[int, int, int, int] = (2, 16, 86, 64)
#: Classes per column, PAD and MASK included (`MidiBertConfig.cp_vocab_sizes` defaults to it).
CP_VOCAB_SIZES: tuple[int, int, int, int] = (4, 18, 88, 66)

#: MIDI-BERT's tick resolution: 480 ticks a beat, 4 beats a bar, 16 positions a bar (120 ticks apart).
MIDIBERT_TICKS_PER_BEAT = 480
BEATS_PER_BAR = 4
POSITIONS_PER_BAR = 16
LOWEST_PITCH, HIGHEST_PITCH = 22, 107
#: Duration bins are 60, 120, ..., 3840 ticks (a 32nd note to two bars) at 480 ticks per beat.
NUM_DURATIONS = 64

#: Larger files are refused before parsing: no real piece comes near it (EMOPIA's largest is 17 kB) and a
#: huge file would take seconds and gigabytes to parse.
MAX_MIDI_BYTES = 64 * 1024 * 1024
MIDI_HEADER = b"MThd"
#: The file names taken for MIDI (by the CLI's folder search, the demo's upload box, the builders).
MIDI_SUFFIXES: tuple[str, ...] = (".mid", ".midi", ".kar")


class CPMidiTokenizer:
    """MIDI -> compound-word token rows, as MIDI-BERT reads them.

    Args:
        mode: `"midibert"` (bit-exact with MIDI-BERT's own data, for its weights) or `"rescaled"` (each
            file's real ticks per beat rescaled to 480; for models trained from scratch).
        max_length: tokens per row (MIDI-BERT's 512).
    """

    def __init__(self, mode: str = "midibert", max_length: int = 512) -> None:
        if mode not in TOKENIZER_MODES:
            raise ValueError(f"mode={mode!r}: choose one of {TOKENIZER_MODES}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        self.mode = mode
        self.max_length = max_length

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, max_length={self.max_length})"

    def __call__(
        self,
        midi: str | os.PathLike | bytes | symusic.Score,
        max_rows: int | None = None,
        source: object = None,
    ) -> np.ndarray:
        """Tokenize one MIDI (a path, its bytes, or a `symusic.Score`); `source` names it in error messages
        (defaults to `midi`: give the path when passing a Score already read from it).

        Returns:
            int64 [N, max_length, 4]: the piece's tokens in rows, the last row padded; only the first
            `max_rows` rows when it is given.

        Raises:
            PoolingVQInputError: the MIDI is missing, unreadable, corrupt, too large, or has no usable note.
        """
        if max_rows is not None and (
            isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
        ):
            raise ValueError(f"max_rows must be a positive int or None, got {max_rows!r}")
        score = load_score(midi)
        tokens = self.tokenize_score(score, source=midi if source is None else source)
        rows = split_into_rows(tokens, self.max_length)
        return rows if max_rows is None else rows[:max_rows]

    def tokenize_score(self, score: symusic.Score, source: object = None) -> np.ndarray:
        """The tokens of a `symusic.Score`, one per note, unsplit: int64 [T, 4], T >= 1.

        `source` names the input in error messages (defaults to the score itself).
        """
        source = score if source is None else source
        score = load_score(score)
        if score.tpq < 1:
            raise PoolingVQInputError(source, f"has {score.tpq} ticks per beat")
        start, duration, pitch = merged_notes(score, source)
        ticks_per_beat = MIDIBERT_TICKS_PER_BEAT if self.mode == "midibert" else score.tpq
        tokens = tokenize_notes(
            start, duration, pitch, ticks_per_beat=ticks_per_beat, midibert_quirks=self.mode == "midibert"
        )
        if len(tokens) == 0:
            raise PoolingVQInputError(
                source, "no note is left: MIDI-BERT's grid drops the notes that start at the end of the piece"
            )
        return tokens

    @property
    def pad_token(self) -> np.ndarray:
        """The padding row `[2, 16, 86, 64]`, int64 [4]."""
        return np.array(PAD_TOKEN, dtype=np.int64)

    @staticmethod
    def attention_mask(tokens: np.ndarray) -> np.ndarray:
        """bool [..., L]: True on real tokens, False on padding (Bar == PAD), for tokens [..., L, 4]."""
        tokens = np.asarray(tokens)
        if tokens.ndim < 1 or tokens.shape[-1] != 4:
            raise PoolingVQInputError(
                tokens, "CP tokens must have a last dimension of 4 [Bar, Position, Pitch, Duration]"
            )
        return tokens[..., 0] != BAR_PAD

    def to_dict(self) -> dict[str, Any]:
        """The settings, JSON-serialisable, for a processor config."""
        return {"mode": self.mode, "max_length": self.max_length}

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> CPMidiTokenizer:
        """The tokenizer that `to_dict` described."""
        unknown = set(settings) - {"mode", "max_length"}
        if unknown:
            raise ValueError(f"unknown CPMidiTokenizer settings: {sorted(unknown)}")
        return cls(**settings)


def tokenize_notes(
    start: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    *,
    ticks_per_beat: int,
    midibert_quirks: bool = False,
) -> np.ndarray:
    """Notes -> CP tokens, vectorised.

    Args:
        start, duration, pitch: int [T], in MIDI-BERT's order (`merged_notes`): by onset, then track, then pitch.
            Pitches must already lie in 22..107.
        ticks_per_beat: the resolution `start` and `duration` are in (480 reads them as they are, as
            MIDI-BERT does).
        midibert_quirks: reproduce MIDI-BERT's grid that ends one step short of the last onset, and its
            dropping of notes that start on the downbeat after the last note's end.

    Returns:
        int64 [T', 4] `[Bar, Position, Pitch, Duration]`, T' <= T (T' < T only through the quirks).
    """
    start = np.asarray(start, dtype=np.int64)
    duration = np.asarray(duration, dtype=np.int64)
    pitch = np.asarray(pitch, dtype=np.int64)
    if len(start) == 0:
        return np.empty((0, 4), dtype=np.int64)
    sixteenth = nearest_sixteenth(start, ticks_per_beat)
    if midibert_quirks:
        sixteenth, kept = _midibert_grid(start, duration, sixteenth, ticks_per_beat)
        sixteenth, duration, pitch = sixteenth[kept], duration[kept], pitch[kept]
        if len(sixteenth) == 0:
            return np.empty((0, 4), dtype=np.int64)
    bar = sixteenth // POSITIONS_PER_BAR
    # The first note of each bar that has notes is "New"; bars without notes get no token at all.
    starts_bar = np.concatenate([[True], bar[1:] != bar[:-1]])
    return np.stack(
        [
            np.where(starts_bar, BAR_NEW, BAR_CONTINUE),
            sixteenth % POSITIONS_PER_BAR,
            pitch - LOWEST_PITCH,
            nearest_duration_bin(duration, ticks_per_beat),
        ],
        axis=1,
    ).astype(np.int64)


def nearest_sixteenth(ticks: np.ndarray, ticks_per_beat: int) -> np.ndarray:
    """int64 [T]: the nearest sixteenth-note index of each tick, halfway ticks going to the earlier one.

    Exact integer form of `ceil(4 * ticks / ticks_per_beat - 1/2)`; MIDI-BERT's `argmin` keeps the first
    (earlier) of two equally near grid points.
    """
    ticks = np.asarray(ticks, dtype=np.int64)
    return -((ticks_per_beat - 8 * ticks) // (2 * ticks_per_beat))


def nearest_duration_bin(duration: np.ndarray, ticks_per_beat: int) -> np.ndarray:
    """int64 [T]: the index of the nearest of 60, 120, ..., 3840 ticks (at 480 a beat), ties to the shorter.

    Exact integer form of `clip(ceil(duration_at_480 / 60 - 1/2) - 1, 0, 63)`.
    """
    duration = np.asarray(duration, dtype=np.int64)
    nearest_multiple = -((ticks_per_beat - 16 * duration) // (2 * ticks_per_beat))
    return np.clip(nearest_multiple - 1, 0, NUM_DURATIONS - 1)


def _midibert_grid(
    start: np.ndarray, duration: np.ndarray, sixteenth: np.ndarray, ticks_per_beat: int
) -> tuple[np.ndarray, np.ndarray]:
    """MIDI-BERT's two quirks at the end of a piece; returns the clipped sixteenths [T] and a keep mask [T].

    Its grid is `arange(0, last_onset, 120)`: it stops short of the last onset, so the last notes snap to the
    last grid point *before* it even when the next one is nearer (the EMOPIA arrays depend on this). Bars
    then run from 0 up to the last note's (snapped) end, and a note starting on or after that last downbeat
    belongs to no bar and is lost (only possible when the last note lasts 0 ticks).
    """
    if ticks_per_beat % (POSITIONS_PER_BAR // BEATS_PER_BAR):
        raise ValueError(f"MIDI-BERT's grid needs ticks_per_beat divisible by 4, got {ticks_per_beat}")
    ticks_per_sixteenth = ticks_per_beat * BEATS_PER_BAR // POSITIONS_PER_BAR
    last_onset = start[-1]
    last_grid_point = max(-(-last_onset // ticks_per_sixteenth) - 1, 0)
    sixteenth = np.minimum(sixteenth, last_grid_point)
    piece_end = sixteenth[-1] * ticks_per_sixteenth + duration[-1]
    ticks_per_bar = ticks_per_beat * BEATS_PER_BAR
    last_downbeat = -(-piece_end // ticks_per_bar) * ticks_per_bar
    return sixteenth, sixteenth * ticks_per_sixteenth < last_downbeat


def split_into_rows(tokens: np.ndarray, max_length: int) -> np.ndarray:
    """int64 [T, 4] -> [ceil(T / max_length), max_length, 4], the last row padded with `PAD_TOKEN`."""
    num_rows = max(-(-len(tokens) // max_length), 1)
    rows = np.empty((num_rows * max_length, 4), dtype=np.int64)
    rows[: len(tokens)] = tokens
    rows[len(tokens) :] = PAD_TOKEN
    return rows.reshape(num_rows, max_length, 4)


def join_rows(rows: np.ndarray) -> np.ndarray:
    """int64 [N, L, 4] rows -> [T, 4]: their real tokens one after another, the piece's first T tokens.

    How a piece's kept rows become the one token sequence the model reads, for the processor and the feature
    cache alike; `PoolingVQForMusicEmotion.encode_midi` cuts it back into rows of L for MIDI-BERT.
    """
    rows = np.asarray(rows)
    return rows.reshape(-1, 4)[rows.reshape(-1, 4)[:, 0] != BAR_PAD]


def merged_notes(score: symusic.Score, source: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pitched notes of every non-drum track, in MIDI-BERT's order; int64 start, duration, pitch [T].

    MIDI-BERT sorts each track's notes by (onset, pitch), concatenates the tracks and sorts stably by onset:
    simultaneous notes come track by track, low to high. Raises when no usable note is left.
    """
    columns: list[tuple[np.ndarray, ...]] = []
    num_drum_notes = 0
    for track_index, track in enumerate(score.tracks):
        notes = track.notes.numpy()
        if track.is_drum:
            num_drum_notes += len(notes["time"])
            continue
        count = len(notes["time"])
        columns.append(
            (
                notes["time"].astype(np.int64),
                notes["duration"].astype(np.int64),
                notes["pitch"].astype(np.int64),
                np.full(count, track_index, dtype=np.int64),
            )
        )
    if not columns or sum(len(c[0]) for c in columns) == 0:
        if num_drum_notes:
            raise PoolingVQInputError(source, f"has only drum notes ({num_drum_notes}), which carry no pitch")
        raise PoolingVQInputError(source, "contains no notes")
    start, duration, pitch, track = (np.concatenate(column) for column in zip(*columns, strict=True))
    if start.min() < 0:
        raise PoolingVQInputError(source, "has notes before tick 0")
    in_range = (pitch >= LOWEST_PITCH) & (pitch <= HIGHEST_PITCH)
    if not in_range.any():
        raise PoolingVQInputError(
            source,
            f"none of its {len(pitch)} notes lies in MIDI-BERT's pitch range {LOWEST_PITCH}..{HIGHEST_PITCH}",
        )
    start, duration, pitch, track = start[in_range], duration[in_range], pitch[in_range], track[in_range]
    # lexsort: last key first; the parse order breaks the remaining ties, as Python's stable sort does.
    order = np.lexsort((np.arange(len(start)), pitch, track, start))
    return start[order], duration[order], pitch[order]


def load_score(midi: str | os.PathLike | bytes | bytearray | memoryview | symusic.Score) -> symusic.Score:
    """A tick-time `symusic.Score` from a path, MIDI bytes or a Score; `PoolingVQInputError` on bad input."""
    if isinstance(midi, symusic.Score):
        return midi if isinstance(midi, symusic.core.ScoreTick) else midi.to("tick")
    if isinstance(midi, (bytes, bytearray, memoryview)):
        return parse_midi_bytes(bytes(midi), source=midi)
    if isinstance(midi, (str, os.PathLike)):
        return parse_midi_bytes(read_midi_file(midi), source=midi)
    raise TypeError(f"expected a path, MIDI bytes or a symusic.Score, got {type(midi).__name__}")


def read_midi_file(path: str | os.PathLike) -> bytes:
    """The bytes of a MIDI file, refusing missing, empty or absurdly large files before reading them.

    The package's one way to read a MIDI file (tokenizer, synthesizer, demo, dataset builders): pair it with
    [`parse_midi_bytes`], or call [`load_score`] for both. Nothing here hands untrusted bytes to symusic before
    the size cap and the chunk walk of [`check_midi_structure`] have passed, so the same bytes always give the
    same answer.
    """
    file = Path(path)
    if not file.exists():
        raise PoolingVQInputError(path, "no such file")
    if not file.is_file():
        raise PoolingVQInputError(path, "is not a file")
    size = file.stat().st_size
    _check_size(size, path)
    return file.read_bytes()


def _check_size(size: int, source: object) -> None:
    if size == 0:
        raise PoolingVQInputError(source, "the MIDI file is empty (0 bytes)")
    if size > MAX_MIDI_BYTES:
        raise PoolingVQInputError(
            source,
            f"is {size / 2**20:.1f} MB, more than the {MAX_MIDI_BYTES // 2**20} MB a MIDI file may have here",
        )


def parse_midi_bytes(data: bytes, source: object) -> symusic.Score:
    """Parse MIDI bytes with symusic, after checks that keep symusic's parser away from inputs it crashes on."""
    _check_size(len(data), source)
    check_midi_structure(data, source)
    try:
        # sanitize_data clamps data bytes to 7 bits; without it corrupt bytes can crash symusic's parser.
        return symusic.Score.from_midi(data, sanitize_data=True)
    except Exception as error:  # symusic raises RuntimeError and others on corrupt event data
        raise PoolingVQInputError(source, f"is not a readable MIDI file ({error})") from error


def check_midi_structure(data: bytes, source: object) -> None:
    """Check the header and that every chunk lies inside the data (symusic reads past a truncated chunk).

    Loops over the file's chunks (one per track), never over its events.
    """
    if data[:4] != MIDI_HEADER:
        raise PoolingVQInputError(source, "is not a MIDI file (it does not start with 'MThd')")
    if len(data) < 14:
        raise PoolingVQInputError(
            source, f"is a truncated MIDI file: {len(data)} bytes, shorter than a MIDI header"
        )
    header_length, _, num_tracks, division = struct.unpack(">IHHH", data[4:14])
    if header_length < 6:
        raise PoolingVQInputError(source, f"is a corrupt MIDI file: its header claims {header_length} bytes")
    if 8 + header_length > len(data):
        raise PoolingVQInputError(
            source,
            f"not a readable MIDI file: its header claims {header_length} bytes, the file has {len(data)}",
        )
    if division & 0x8000:
        raise PoolingVQInputError(source, "uses SMPTE time (frames per second), which has no ticks per beat")
    if division == 0:
        raise PoolingVQInputError(source, "is a corrupt MIDI file: 0 ticks per beat")
    position, found_tracks = 8 + header_length, 0
    while found_tracks < num_tracks and position + 8 <= len(data):
        chunk_length = struct.unpack(">I", data[position + 4 : position + 8])[0]
        if position + 8 + chunk_length > len(data):
            raise PoolingVQInputError(
                source,
                f"is a truncated MIDI file: a chunk at byte {position} claims {chunk_length} bytes, "
                f"only {len(data) - position - 8} follow",
            )
        found_tracks += data[position : position + 4] == b"MTrk"
        position += 8 + chunk_length
    if found_tracks < num_tracks:
        raise PoolingVQInputError(
            source,
            f"is a truncated MIDI file: its header announces {num_tracks} tracks, it holds {found_tracks}",
        )


def tokenize_midi_command(args: argparse.Namespace) -> int:
    """`poolingvq tokenize-midi FILE... --mode M --out tokens.npy`: all rows of all files, in order, int64 [N, L, 4]."""
    out = Path(args.out)
    if out.is_dir():
        raise PoolingVQInputError(out, "is a folder: --out names the .npy file to write")
    # np.save appends ".npy" to a name without it: name the file it really writes, and say that name.
    out = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")
    tokenizer = CPMidiTokenizer(mode=args.mode)
    rows = np.concatenate([tokenizer(file) for file in args.files])
    with atomic_path(out) as temporary, open(temporary, "wb") as file:
        np.save(file, rows)
    print(
        f"{len(args.files)} file(s) -> {rows.shape[0]} rows of {tokenizer.max_length} tokens ({args.mode}): {out}"
    )
    return 0


__all__ = [
    "CP_VOCAB_SIZES",
    "CPMidiTokenizer",
    "MAX_MIDI_BYTES",
    "MIDI_SUFFIXES",
    "PAD_TOKEN",
    "TOKENIZER_MODES",
    "join_rows",
    "load_score",
    "merged_notes",
    "parse_midi_bytes",
    "read_midi_file",
    "split_into_rows",
    "tokenize_midi_command",
    "tokenize_notes",
]
