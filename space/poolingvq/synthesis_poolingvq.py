"""MIDI -> audio: render a score with a General MIDI soundfont, for clips that have no recording.

Remote code: copied flat into every saved model folder; imports only the standard library, numpy, symusic
and its own siblings.

EMOPIA and VGMIDI release MIDI only (EMOPIA's audio is YouTube ids), so the audio branch of PoolingVQ reads
audio synthesized from the same MIDI. Rendering uses symusic 0.5.9's `Synthesizer` (symusic 0.6.0's
`render` raises a TypeError) with the GM soundfont `TimGM6mb.sf2` that pretty_midi's wheel carries.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import struct
import tempfile
import threading

import numpy as np
import symusic

from .errors_poolingvq import PoolingVQInputError
from .files_poolingvq import atomic_write_bytes, remove_orphaned_temp_files
from .tokenization_poolingvq import parse_midi_bytes, read_midi_file

#: Rendered audio is scaled so its peak sits at -1 dBFS. The synthesizer's level depends on the soundfont's
#: gains and on how many notes sound at once (a single piano note peaks near -16 dBFS, dense chords clip), so
#: a fixed peak gives every clip the same level; the 1 dB headroom keeps a WAV / MP3 export from clipping
#: (lossy codecs overshoot sample peaks). The feature extractor normalises anyway: the model never sees
#: the level, only people listening to the clips and the files written from them do.
PEAK_DBFS = -1.0
#: With `level="velocity"`, a soundfont's renders are scaled by one gain of its own, chosen so that a reference
#: chord (C major around middle C, velocity 80, 2 s, GM piano) has this RMS level. Soundfonts differ in their
#: overall gain by 10 dB and more; calibrated, the same score sounds equally loud whatever the soundfont, while
#: a louder performance (higher velocities, more notes at once) still sounds louder: the level is the
#: performance's, not the soundfont's or the clip's.
REFERENCE_RMS_DBFS = -32.0
#: The values `synthesize_midi`'s `level` takes (its default first).
SYNTHESIS_LEVELS = ("peak", "velocity")
REFERENCE_CHORD = ((60, 80), (64, 80), (67, 80))
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
SOUNDFONT_FILE_NAME = "TimGM6mb.sf2"
#: Bumped whenever `_retune_soundfont` changes, so stale patched copies in the cache are not reused.
RETUNE_VERSION = 1

# SoundFont 2 records of the "pdta" chunk (SF2.04 spec, section 7).
_SF2_BAG = np.dtype([("generator", "<u2"), ("modulator", "<u2")])
_SF2_GENERATOR = np.dtype([("operator", "<u2"), ("amount", "<u2")])
_SF2_SAMPLE_HEADER = np.dtype(
    [
        ("name", "S20"),
        ("start", "<u4"),
        ("end", "<u4"),
        ("loop_start", "<u4"),
        ("loop_end", "<u4"),
        ("sample_rate", "<u4"),
        ("original_pitch", "u1"),
        ("pitch_correction", "i1"),
        ("sample_link", "<u2"),
        ("sample_type", "<u2"),
    ]
)
_SF2_INSTRUMENT = np.dtype([("name", "S20"), ("bag", "<u2")])
_GENERATOR_SAMPLE_ID = 53
_GENERATOR_OVERRIDING_ROOT_KEY = 58


def default_soundfont_path() -> str:
    """Path of the General MIDI soundfont `TimGM6mb.sf2` shipped inside pretty_midi's package folder.

    The package is located with `importlib.util.find_spec`, without importing it: remote code may import
    only its allowed libraries, and only the data file is needed.
    """
    spec = importlib.util.find_spec("pretty_midi")
    package_folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in package_folders:
        candidate = os.path.join(folder, SOUNDFONT_FILE_NAME)
        if os.path.isfile(candidate):
            return candidate
    raise PoolingVQInputError(
        SOUNDFONT_FILE_NAME,
        "the default General MIDI soundfont comes with pretty_midi: `pip install pretty_midi`, "
        "or pass soundfont= the path of a .sf2 / .sf3 file",
    )


def synthesize_midi(
    midi: str | os.PathLike | bytes | symusic.Score,
    sample_rate: int = 24000,
    soundfont: str | os.PathLike | None = None,
    max_seconds: float | None = 60.0,
    sustain_pedal: bool = True,
    level: str = "peak",
) -> np.ndarray:
    """Render a MIDI score to a float32 [T] mono waveform, peak at -1 dBFS (or at the performance's own level).

    The score is first cut to its first `max_seconds` (notes that start later are dropped, notes still
    sounding are shortened), so a long MIDI costs bounded time; the audio is then cut to exactly
    `max_seconds * sample_rate` samples at most, as the synthesizer lets the last notes ring a few samples on.
    symusic's synthesizer ignores the sustain pedal (CC64), so with `sustain_pedal` the pedal is applied to
    the notes first (see `_hold_notes_under_sustain_pedal`).
    The soundfont is first retuned (see `_retune_soundfont`): symusic 0.5.9 ignores SoundFont root-key
    overrides, which left TimGM6mb's piano 13 to 44 semitones sharp.

    Rendering is deterministic: the same score, soundfont and rate always give identical samples. One
    `Synthesizer` is kept per (soundfont, sample rate) so the soundfont is parsed once; symusic does not
    document its `Synthesizer` as thread-safe, so renders on a shared instance are serialised by a lock
    (threads still overlap in everything else; use processes to render in parallel).

    Args:
        midi: a path to a MIDI file, its bytes, or a `symusic.Score` (any time unit).
        sample_rate: rate of the result (MERT's 24 kHz).
        soundfont: a .sf2 / .sf3 General MIDI soundfont; `None` uses [`default_soundfont_path`].
        max_seconds: keep only the first `max_seconds` of the score (the paper's 60 s); `None` keeps all.
        sustain_pedal: hold notes released under the sustain pedal until the pedal is lifted. On by
            default: EMOPIA's piano transcriptions carry the pianist's pedalling as CC64, and without it
            their notes sound dry and detached, unlike the recordings they were transcribed from.
        level: `"peak"`: every clip peaks at -1 dBFS (the same level whatever its dynamics). `"velocity"`: the
            soundfont's calibrated gain (see `REFERENCE_RMS_DBFS`), so a piece played softer renders softer;
            what a model reads when it is to hear dynamics. A very loud clip may then exceed 1.0: it is scaled
            down to peak at 0 dBFS, the one case where its level is not kept.

    Returns:
        float32 [T] mono: the mean of the synthesizer's two channels.

    Raises:
        PoolingVQInputError: missing, empty or corrupt MIDI; a score without notes (within `max_seconds`);
            a missing or unreadable soundfont; a sample rate outside [1000, 384000] Hz.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise PoolingVQInputError(midi, f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise PoolingVQInputError(midi, f"sample_rate {sample_rate} Hz is outside [1000, 384000] Hz")
    if max_seconds is not None and not max_seconds > 0:
        raise PoolingVQInputError(midi, f"max_seconds must be positive or None, got {max_seconds}")
    if level not in SYNTHESIS_LEVELS:
        raise ValueError(f"level={level!r}: choose one of {SYNTHESIS_LEVELS}")

    score = _read_score(midi).to("second")  # a copy: the caller's score is never modified
    if score.note_num() == 0:
        raise PoolingVQInputError(midi, "the MIDI has no notes")
    if sustain_pedal:
        _hold_notes_under_sustain_pedal(score)
    if max_seconds is not None:
        score = score.trim(0.0, float(max_seconds), end_mode="truncate")
        if score.note_num() == 0:
            raise PoolingVQInputError(midi, f"the MIDI has no notes in its first {max_seconds:g} s")

    soundfont_path = _resolve_soundfont(soundfont)
    if level == "velocity":
        waveform = _render_with_velocity(score, soundfont_path, int(sample_rate))
    else:
        waveform = _render(score, soundfont_path, int(sample_rate))
    if max_seconds is not None:
        waveform = waveform[: round(max_seconds * sample_rate)]
    peak = float(np.abs(waveform).max(initial=0.0))
    if not np.isfinite(peak) or peak == 0.0:
        raise PoolingVQInputError(midi, "the MIDI renders to silence with this soundfont")
    if level == "velocity":
        gain = min(_calibrated_gain(soundfont_path, int(sample_rate)), 1.0 / peak)
    else:
        gain = 10 ** (PEAK_DBFS / 20) / peak
    return np.ascontiguousarray(waveform * np.float32(gain))


def _render(score: symusic.Score, soundfont_path: str, sample_rate: int) -> np.ndarray:
    """The synthesizer's output, mixed to mono float32 [T]."""
    synthesizer, render_lock = _load_synthesizer(soundfont_path, sample_rate)
    with render_lock:
        stereo = synthesizer.render(score, stereo=True)  # [2, T]
    return stereo.mean(axis=0, dtype=np.float32)


#: Bumped whenever `level="velocity"` renders change (cache keys of synthesized clips include it).
VELOCITY_RENDER_VERSION = 1
#: Notes are rendered in groups of this many velocity steps (see `_render_with_velocity`): 16 groups.
VELOCITY_GROUP = 8
#: The velocity every note is rendered at, its loudness then applied as a gain (a soundfont's velocity layers, where
#: it has any, would otherwise change the timbre with the gain already applied).
RENDER_VELOCITY = 100


def _render_with_velocity(
    score: symusic.core.ScoreSecond, soundfont_path: str, sample_rate: int
) -> np.ndarray:
    """Render with each note as loud as its velocity asks: amplitude (velocity / 127)^2, i.e. 40 log10(v / 127) dB,
    General MIDI's recommended velocity curve (about -6 dB from velocity 77 to 54, EMOPIA's mean velocities of
    its high- and low-arousal quadrants).

    symusic 0.5.9's synthesizer ignores note velocities (the SoundFont default modulator from velocity to
    attenuation is not applied: a chord at velocity 30 and at 120 render to the same level with every soundfont
    tried here), so a piece played softer would sound exactly as loud. The notes are therefore rendered in
    groups of `VELOCITY_GROUP` velocity steps, each at `RENDER_VELOCITY`, and the groups summed with their gains:
    at most 16 renders, whose cost together is that of one (it grows with the notes, not with the renders).
    """
    tracks = [track.notes.numpy() for track in score.tracks]
    group_of = [np.clip(notes["velocity"].astype(np.int64), 1, 127) // VELOCITY_GROUP for notes in tracks]
    parts = []
    for group in np.unique(np.concatenate(group_of)):
        part = score.copy()
        for track, notes, groups in zip(part.tracks, tracks, group_of, strict=True):
            chosen = groups == group
            track.notes = symusic.Note.from_numpy(
                notes["time"][chosen],
                notes["duration"][chosen],
                notes["pitch"][chosen],
                np.full(int(chosen.sum()), RENDER_VELOCITY, dtype=notes["velocity"].dtype),
                "second",
            )
        velocity = min(group * VELOCITY_GROUP + VELOCITY_GROUP / 2, 127)
        parts.append(_render(part, soundfont_path, sample_rate) * np.float32((velocity / 127) ** 2))
    mixed = np.zeros(max((len(part) for part in parts), default=0), dtype=np.float32)
    for part in parts:
        mixed[: len(part)] += part
    return mixed


@functools.lru_cache(maxsize=8)
def _calibrated_gain(soundfont_path: str, sample_rate: int) -> float:
    """The gain that brings `REFERENCE_CHORD` (2 s, GM piano) to `REFERENCE_RMS_DBFS` with this soundfont."""
    ticks = 480
    score = symusic.Score(ticks)
    track = symusic.Track(program=0)
    for pitch, velocity in REFERENCE_CHORD:
        track.notes.append(symusic.Note(0, 4 * ticks, pitch, velocity))  # 4 beats at 120 bpm = 2 s
    score.tracks.append(track)
    reference = _render_with_velocity(score.to("second"), soundfont_path, sample_rate)[: 2 * sample_rate]
    rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
    if not rms > 0:
        raise PoolingVQInputError(soundfont_path, "the soundfont renders a piano chord to silence")
    return 10 ** (REFERENCE_RMS_DBFS / 20) / rms


def _read_score(midi: str | os.PathLike | bytes | symusic.Score) -> symusic.Score:
    """A path, bytes or Score -> a symusic Score; unreadable input -> PoolingVQInputError.

    Files and bytes go through the tokenizer's hardened reader: the size cap, the header and the chunk walk are
    checked before symusic parses anything, so MIDI-only prediction (which synthesizes first) refuses a huge or
    truncated file with the same message, every time, that tokenizing it would give.
    """
    if isinstance(midi, symusic.Score):
        return midi
    if isinstance(midi, (str, os.PathLike)):
        return parse_midi_bytes(read_midi_file(midi), source=midi)
    if isinstance(midi, (bytes, bytearray, memoryview)):
        return parse_midi_bytes(bytes(midi), source=midi)
    raise PoolingVQInputError(midi, "MIDI must be a path, bytes or a symusic.Score")


def _hold_notes_under_sustain_pedal(score: symusic.core.ScoreSecond) -> None:
    """Extend, in place, every note released while the sustain pedal is down to the pedal's release.

    As on a piano (and as note-seq's `apply_sustain_control_changes` does), a note held by the pedal stops
    when the same key is struck again, so re-struck notes never overlap themselves.
    """
    for track in score.tracks:
        if len(track.pedals) == 0 or len(track.notes) == 0:
            continue
        pedals, notes = track.pedals.numpy(), track.notes.numpy()
        order = np.argsort(pedals["time"], kind="stable")
        pedal_starts = pedals["time"][order]
        pedal_ends = pedal_starts + pedals["duration"][order]
        onsets, pitches = notes["time"], notes["pitch"]
        releases = onsets + notes["duration"]

        pedal = np.maximum(np.searchsorted(pedal_starts, releases, side="right") - 1, 0)
        held = (pedal_starts[pedal] <= releases) & (releases < pedal_ends[pedal])
        sustained_until = np.where(held, pedal_ends[pedal], releases)

        by_key = np.lexsort((onsets, pitches))  # notes of each key in time order
        next_strike = np.full(len(onsets), np.inf, dtype=np.float64)
        same_key = pitches[by_key][1:] == pitches[by_key][:-1]
        next_strike[by_key[:-1][same_key]] = onsets[by_key][1:][same_key]
        new_releases = np.maximum(releases, np.minimum(sustained_until, next_strike))

        durations = (new_releases - onsets).astype(notes["duration"].dtype)
        track.notes = symusic.Note.from_numpy(onsets, durations, pitches, notes["velocity"], "second")


def _resolve_soundfont(soundfont: str | os.PathLike | None) -> str:
    if soundfont is None:
        return default_soundfont_path()
    path = os.path.realpath(os.fspath(soundfont))
    if not os.path.isfile(path):
        raise PoolingVQInputError(soundfont, "no such soundfont file")
    return path


@functools.lru_cache(maxsize=4)
def _load_synthesizer(
    soundfont_path: str, sample_rate: int
) -> tuple[symusic.core.Synthesizer, threading.Lock]:
    """One parsed (and retuned) soundfont per (path, rate), with the lock that serialises its renders."""
    try:
        synthesizer = symusic.Synthesizer(_retuned_copy(soundfont_path), sample_rate=sample_rate)
    except RuntimeError as error:
        raise PoolingVQInputError(soundfont_path, f"not a readable SoundFont ({error})") from error
    return synthesizer, threading.Lock()


def _retuned_copy(soundfont_path: str) -> str:
    """Path of a retuned copy of the soundfont, written once to a cache folder keyed by its content."""
    with open(soundfont_path, "rb") as file:
        original = file.read()
    digest = hashlib.sha256(original + bytes([RETUNE_VERSION])).hexdigest()[:16]
    # One folder per user: a shared temporary folder must not hand one user's files to another.
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    cache_folder = os.path.join(tempfile.gettempdir(), f"poolingvq-soundfonts-{user}")
    retuned_path = os.path.join(cache_folder, f"{digest}-{os.path.basename(soundfont_path)}")
    if not os.path.isfile(retuned_path):
        retuned = _retune_soundfont(original, soundfont_path)
        # The package's atomic writer: concurrent processes never read a half-written file, and the leftovers of
        # writers killed mid-write are removed (a cache need not survive a power cut: no fsync).
        atomic_write_bytes(retuned_path, retuned, durable=False)
        remove_orphaned_temp_files(cache_folder)
    return retuned_path


def _retune_soundfont(soundfont: bytes, name: str) -> bytes:
    """Bake every instrument zone's overridingRootKey into a sample header of its own.

    symusic 0.5.9's synthesizer (symusic issue #55, "sounds off key") plays a sample relative to the
    `original_pitch` of its header and ignores generator 58, overridingRootKey, which SoundFonts use to
    reuse one sample across key ranges. TimGM6mb's piano stores all its samples with pitch 60 and the real
    root keys in generator 58, so every piano note came out 13 to 44 semitones sharp. For each zone whose
    root key differs from its sample's pitch, this appends a copy of the sample header with that root key
    and points the zone at it; the audio data is untouched. Works for .sf2 and .sf3 (same "pdta" layout).
    """
    if soundfont[:4] != b"RIFF" or soundfont[8:12] != b"sfbk":
        raise PoolingVQInputError(name, "not a SoundFont (no RIFF sfbk header)")
    try:
        chunks = _riff_chunks(soundfont, 12, len(soundfont))
        rebuilt = b"".join(
            _riff_chunk(chunk_id, _retune_pdta(body) if body[:4] == b"pdta" else body)
            for chunk_id, body in chunks
        )
    except (KeyError, ValueError, IndexError, struct.error) as error:
        raise PoolingVQInputError(name, f"not a readable SoundFont ({error})") from error
    return b"RIFF" + struct.pack("<I", len(rebuilt) + 4) + b"sfbk" + rebuilt


def _retune_pdta(pdta: bytes) -> bytes:
    """The "pdta" LIST body with root-key overrides moved into cloned sample headers (vectorised)."""
    chunks = dict(_riff_chunks(pdta, 4, len(pdta)))
    instruments = np.frombuffer(chunks[b"inst"], _SF2_INSTRUMENT)
    bags = np.frombuffer(chunks[b"ibag"], _SF2_BAG)
    generators = np.frombuffer(chunks[b"igen"], _SF2_GENERATOR).copy()
    headers = np.frombuffer(chunks[b"shdr"], _SF2_SAMPLE_HEADER)  # the last one is the "EOS" terminator

    zone_of_generator = np.searchsorted(bags["generator"], np.arange(len(generators)), side="right") - 1
    root_key = np.full(len(bags), -1)
    is_root = generators["operator"] == _GENERATOR_OVERRIDING_ROOT_KEY
    root_key[zone_of_generator[is_root]] = generators["amount"][is_root]
    # A root key in an instrument's global zone (its first zone, when that has no sample) applies to all its
    # zones that do not set their own.
    is_sample = generators["operator"] == _GENERATOR_SAMPLE_ID
    has_sample = np.zeros(len(bags), dtype=bool)
    has_sample[zone_of_generator[is_sample]] = True
    first_zone = instruments["bag"][
        np.searchsorted(instruments["bag"], np.arange(len(bags)), side="right") - 1
    ]
    inherited = (root_key < 0) & ~has_sample[first_zone]
    root_key[inherited] = root_key[first_zone[inherited]]

    sample_generators = np.flatnonzero(is_sample)
    zone_roots = root_key[zone_of_generator[sample_generators]]
    samples = generators["amount"][sample_generators]
    needs_clone = (zone_roots >= 0) & (zone_roots != headers["original_pitch"][samples])
    clones = headers[samples[needs_clone]].copy()
    clones["original_pitch"] = zone_roots[needs_clone]
    if len(headers) + len(clones) > np.iinfo(np.uint16).max:
        raise ValueError("too many sample headers to retune")
    generators["amount"][sample_generators[needs_clone]] = len(headers) - 1 + np.arange(len(clones))
    chunks[b"igen"] = generators.tobytes()
    chunks[b"shdr"] = np.concatenate([headers[:-1], clones, headers[-1:]]).tobytes()
    return b"pdta" + b"".join(_riff_chunk(chunk_id, body) for chunk_id, body in chunks.items())


def _riff_chunks(data: bytes, start: int, end: int) -> list[tuple[bytes, bytes]]:
    """(id, body) of the RIFF chunks in data[start:end]; a LIST body starts with its 4-byte type."""
    chunks = []
    while start + 8 <= end:
        chunk_id = data[start : start + 4]
        (size,) = struct.unpack_from("<I", data, start + 4)
        if start + 8 + size > end:
            raise ValueError(f"chunk {chunk_id!r} runs past the end of the file")
        chunks.append((chunk_id, data[start + 8 : start + 8 + size]))
        start += 8 + size + (size & 1)  # chunks are padded to an even size
    return chunks


def _riff_chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


__all__ = ["default_soundfont_path", "synthesize_midi"]
