"""Pre-training a small MIDI-BERT here, with MIDI-BERT's own objective, on symbolic music available offline.

    poolingvq pretrain-midi --output-dir runs/midibert-small --cache-dir ~/.cache/poolingvq/pretrain-midi

MIDI-BERT's official weights cannot always be downloaded. This module trains a stand-in from scratch:

1. Corpus: the TRAINING split only of EMOPIA and of VGMIDI (`paper` configs of `poolingvq.data`; a training
   piece whose MIDI content equals a validation or test piece's is dropped too), plus the corpus bundled in
   music21's wheel (Bach, Palestrina, Beethoven quartets, thousands of folk tunes...; `pip install music21`),
   each work converted once to MIDI in the cache folder. Everything is tokenized with
   `CPMidiTokenizer(mode="rescaled")` (from scratch, the musically correct grid) into rows of 512 CP tokens and
   stored once as `tokens.npy`, keyed by the MIDI contents and the tokenizer settings.
2. Objective: MIDI-BERT's masked compound-word modelling. 15% of the real tokens of each row are chosen; of
   those 80% become the MASK word in all four classes, 10% a random word per class, 10% stay; four linear heads
   over the last hidden state predict the original Bar / Position / Pitch / Duration; the loss is the four
   cross-entropies over the chosen tokens, weighted by vocabulary size as MIDI-BERT's trainer does
   (`--loss-weighting mean` for a plain mean).
3. A small `MidiBertConfig` (256 wide, 4 layers) trained with Accelerate, AdamW, warmup then linear decay; 5% of
   the pieces (of each source) are held out for masked-token accuracy; the best epoch by held-out loss is kept.
4. Output: a folder that `MidiBertModel.from_pretrained` loads, `mlm_heads.safetensors` (the prediction heads,
   to continue training), `pretraining_metrics.json` and a README.md. `--resume` continues from the last
   checkpoint in `output_dir/checkpoints` (after an epoch, or within one with `--save-every-steps`); the run's
   skeleton (checkpoints, resume, epochs) is `run_loop.py`, shared with `poolingvq train`.

Where this departs from MIDI-BERT's code, and why: it chooses 15% of the *real* tokens (MIDI-BERT draws from
all 512 positions, padding included, and then trains on predicting padding); a random replacement is drawn
from the real words of each class (MIDI-BERT may draw PAD, which its attention mask then hides, or MASK); rows
are trimmed to the longest row of their batch (relative attention makes this exact), which saves most of the
compute on the many short folk tunes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .arguments import add_dataclass_arguments, dataclass_from_namespace
from .checkpoints import save_checkpoint, save_tensors_atomically, step_checkpoint
from .configuration_poolingvq import MidiBertConfig
from .errors_poolingvq import PoolingVQInputError
from .files_poolingvq import atomic_directory, atomic_path, atomic_write_text
from .midibert_poolingvq import CP_CLASSES, MidiBertModel
from .run_loop import EpochResult, RunState, make_accelerator, register_and_resume, run_epochs
from .tokenization_poolingvq import CP_VOCAB_SIZES, PAD_TOKEN, CPMidiTokenizer, load_score, split_into_rows

logger = logging.getLogger("poolingvq.pretraining")

#: The MASK word of each class: the last index of its vocabulary, `[3, 17, 87, 65]`.
MASK_TOKEN: tuple[int, int, int, int] = tuple(size - 1 for size in CP_VOCAB_SIZES)
#: Real words of each class are `0 .. PAD - 1`: random replacements are drawn from them.
NUM_REAL_WORDS: tuple[int, int, int, int] = PAD_TOKEN
#: Bumped whenever the token cache would change for the same MIDI files and tokenizer settings.
CORPUS_CACHE_VERSION = 1
#: music21 corpus files that are analyses (roman numerals), not music to learn from.
MUSIC21_SKIPPED_SUFFIXES = (".rntxt",)
#: Row lengths of a batch are rounded up to a multiple of this (fewer distinct shapes, friendlier kernels).
LENGTH_MULTIPLE = 16
HEADS_FILENAME = "mlm_heads.safetensors"
METRICS_FILENAME = "pretraining_metrics.json"


@dataclass
class PretrainingArguments:
    """Everything a pre-training run depends on."""

    output_dir: str = field(default="runs/midibert-small", metadata={"help": "where the model goes"})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "MIDI conversions and token arrays (default ~/.cache/poolingvq/pretrain-midi)"},
    )
    emopia_dir: str | None = field(
        default=None, metadata={"help": "EMOPIA release (default: ../shared/data/emopia if present)"}
    )
    vgmidi_dir: str | None = field(
        default=None, metadata={"help": "VGMIDI release (default: ../shared/data/vgmidi if present)"}
    )
    no_emopia: bool = field(default=False, metadata={"help": "leave EMOPIA out"})
    no_vgmidi: bool = field(default=False, metadata={"help": "leave VGMIDI out"})
    no_music21: bool = field(default=False, metadata={"help": "leave music21's corpus out"})
    piano_corpus_dir: str | None = field(
        default=None,
        metadata={
            "help": "a folder of unlabelled piano MIDI (e.g. ../shared/data/pretrain: POP909 + ASAP), every "
            ".mid/.midi file under it; pieces are grouped (a POP909 song with its versions, an ASAP work with "
            "its performances) so that the held-out share never shares a piece with training"
        },
    )
    max_music21_files: int | None = field(
        default=None, metadata={"help": "convert and use only the first N music21 corpus files (fixed order)"}
    )
    max_music21_works: int | None = field(
        default=None,
        metadata={
            "help": "use at most N music21 works, drawn round-robin over its collections (Bach, folk...)"
        },
    )
    music21_time_limit: float | None = field(
        default=None,
        metadata={
            "help": "stop converting new music21 files after this many seconds (conversions are cached)"
        },
    )
    conversion_workers: int = field(default=2, metadata={"help": "processes converting music21 works"})
    corpus_file: str | None = field(
        default=None,
        metadata={
            "help": "train on a corpus written by --export-corpus instead of building one from the sources: "
            "a machine without the MIDI files (a rented GPU) trains on the same rows and hold-out"
        },
    )
    export_corpus: str | None = field(
        default=None,
        metadata={"help": "build the corpus from the sources, write it to this .npz file, and stop"},
    )
    epochs: int = field(default=3, metadata={"help": "passes over the training rows"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "rows per step"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (MIDI-BERT's 0.01)"})
    warmup_fraction: float = field(default=0.06, metadata={"help": "share of the steps warming up"})
    max_grad_norm: float = field(default=3.0, metadata={"help": "gradient clipping (MIDI-BERT's 3.0)"})
    mask_probability: float = field(default=0.15, metadata={"help": "share of real tokens to predict"})
    loss_weighting: str = field(
        default="vocab",
        metadata={
            "help": "vocab: class losses weighted by vocabulary size (MIDI-BERT); mean: plain mean",
            "choices": ("vocab", "mean"),
        },
    )
    heldout_fraction: float = field(default=0.05, metadata={"help": "share of pieces held out"})
    seed: int = field(default=42, metadata={"help": "seeds initialisation, hold-out, order and masks"})
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    cp_embedding_size: int = 64
    max_positions: int = field(default=512, metadata={"help": "tokens per row = max_position_embeddings"})
    dropout: float = 0.1
    mixed_precision: str = field(
        default="no", metadata={"help": "no, fp16 or bf16", "choices": ("no", "fp16", "bf16")}
    )
    transpose: int = field(
        default=0,
        metadata={
            "help": "key augmentation: each training row is shifted by a random number of semitones in "
            "[-N, N] (kept inside the piano's range), so the encoder learns intervals, not absolute keys"
        },
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "continue from a pre-trained folder (a `MidiBertModel` folder, with `mlm_heads.safetensors` "
            "when there is one); its size replaces the size flags"
        },
    )
    save_every_steps: int | None = field(
        default=None,
        metadata={
            "help": "also checkpoint every N steps within an epoch, so that a killed run loses at most N steps"
        },
    )
    log_every: int = field(default=20, metadata={"help": "print training progress every N steps"})
    resume: bool = field(default=False, metadata={"help": "continue from the last checkpoint in output_dir"})

    def midibert_config(self) -> MidiBertConfig:
        return MidiBertConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            cp_embedding_size=self.cp_embedding_size,
            max_position_embeddings=self.max_positions,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
        )


def add_pretrain_midi_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per `PretrainingArguments` field, typed and documented from the dataclass."""
    add_dataclass_arguments(parser, PretrainingArguments)


# ---------------------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class CorpusPiece:
    """One piece of music for pre-training: where it comes from, its id there, and its MIDI bytes."""

    source: str  # "emopia", "vgmidi", "music21", or "pop909" / "asap" / ... from a piano corpus folder
    piece_id: str
    midi: bytes


def default_shared_data_dir(name: str) -> Path | None:
    """`../shared/data/<name>` next to the repository, when it exists (the development machines' copy)."""
    candidate = Path(__file__).resolve().parents[2] / "shared" / "data" / name
    return candidate if candidate.is_dir() else None


def emotion_training_pieces(
    source: str, data_dir: str | os.PathLike, datasets_cache: str | os.PathLike | None = None
) -> tuple[list[CorpusPiece], dict[str, Any]]:
    """The `paper` TRAINING split of EMOPIA or VGMIDI as pieces, never a validation or test clip.

    A training piece whose MIDI bytes equal those of a validation or test piece is dropped as well, so that
    no evaluation content reaches pre-training under another name.

    Returns:
        (pieces, counts): counts has the split sizes and how many training pieces were dropped.
    """
    from .data import EmopiaBuilder, VgmidiBuilder

    builder_class = {"emopia": EmopiaBuilder, "vgmidi": VgmidiBuilder}[source]
    builder = builder_class(
        config_name="paper",
        data_dir=str(data_dir),
        synthesize_audio=False,
        cache_dir=None if datasets_cache is None else str(datasets_cache),
    )
    builder.download_and_prepare()
    splits = builder.as_dataset()
    evaluation_digests = {
        hashlib.sha256(midi).hexdigest()
        for split in splits
        if split != "train"
        for midi in splits[split]["midi"]
    }
    train = splits["train"]
    pieces, dropped = [], []
    for piece_id, midi in zip(train["id"], train["midi"], strict=True):
        if hashlib.sha256(midi).hexdigest() in evaluation_digests:
            dropped.append(piece_id)
        else:
            pieces.append(CorpusPiece(source, piece_id, midi))
    if dropped:
        logger.warning(
            "%s: %d training pieces equal an evaluation piece, left out: %s", source, len(dropped), dropped
        )
    counts = {
        "split_sizes": {split: len(data) for split, data in splits.items()},
        "train_pieces_equal_to_evaluation_pieces": dropped,
    }
    return pieces, counts


def music21_corpus_files() -> list[tuple[str, Path]]:
    """The files of music21's bundled corpus as `(relative path, path)`, in a fixed order that interleaves the
    collections (bach, palestrina, essenFolksong, ...) round-robin, so a bounded run still gets a mix."""
    from music21 import corpus

    paths = [path for path in corpus.getCorePaths() if path.suffix not in MUSIC21_SKIPPED_SUFFIXES]
    if not paths:
        return []
    root = Path(os.path.commonpath([path.parent for path in paths]))
    by_collection: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for path in sorted(paths):
        relative = path.relative_to(root).as_posix()
        by_collection[relative.split("/")[0]].append((relative, path))
    queues = [by_collection[name] for name in sorted(by_collection)]
    return [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]


def convert_music21_file(path: str, out_dir: str) -> dict[str, Any]:
    """Parse one music21 corpus file and write each score in it (an opus holds many) as `NNNN.mid` in
    `out_dir`; then write `index.json` (the marker of a finished conversion). Runs in a worker process.

    Returns the index: `{"works": [file names], "failed": count}`.
    """
    import warnings

    from music21 import converter, stream

    warnings.filterwarnings("ignore")  # music21 warns per odd measure; the counts below say what matters
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    works, failed = [], 0
    try:
        parsed = converter.parse(path)
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    except Exception as error:  # music21 raises many kinds on the odd corpus file
        logger.debug("music21 cannot parse %s: %s", path, error)
        scores, failed = [], 1
    for index, score in enumerate(scores):
        try:
            midi = score_to_midi(score)
        except Exception:  # music21 cannot write every corpus score
            failed += 1
            continue
        name = f"{index:04d}.mid"
        (folder / name).write_bytes(midi)
        works.append(name)
    index_data = {"works": works, "failed": failed}
    atomic_write_text(folder / "index.json", json.dumps(index_data), durable=False)
    return index_data


def score_to_midi(score: Any) -> bytes:
    """A music21 score as MIDI bytes (repeats written out, as music21 plays them).

    music21's ABC reader puts one `TimeSignature` object into every measure of a tune that changes meter, and
    the MIDI writer then refuses to insert the same object twice: such a score is written again with a copy of
    the time signature in each measure (about a fifth of the Essen folk songs need it).
    """
    import copy

    from music21 import meter, stream
    from music21.midi import translate

    try:
        return translate.streamToMidiFile(score).writestr()
    except Exception:
        seen: set[int] = set()
        for measure in score.recurse().getElementsByClass(stream.Measure):
            for signature in list(measure.getElementsByClass(meter.TimeSignature)):
                if id(signature) in seen:
                    measure.replace(signature, copy.deepcopy(signature))
                seen.add(id(signature))
        return translate.streamToMidiFile(score).writestr()


def music21_pieces(
    cache_dir: Path,
    max_files: int | None = None,
    max_works: int | None = None,
    time_limit: float | None = None,
    workers: int = 2,
) -> tuple[list[CorpusPiece], dict[str, Any]]:
    """music21's corpus as MIDI pieces, converted once into `cache_dir/music21_midi/` (later runs read it).

    Files are converted in `music21_corpus_files` order by `workers` processes: all of them, the first
    `max_files`, or those done when `time_limit` seconds have passed (files already running finish into the
    cache; `counts["files_used"]` then says how many to pass as `max_files` to get the same corpus again).
    Works music21 cannot parse or write are skipped and counted. Of the works of the files used, `max_works`
    are chosen by `balanced_selection`.
    """
    midi_root = cache_dir / "music21_midi"
    files = music21_corpus_files()[:max_files]
    started = time.monotonic()
    indexes: list[tuple[str, dict[str, Any]]] = []
    in_flight = 2 * max(workers, 1)
    with ProcessPoolExecutor(max_workers=max(workers, 1)) as pool:
        pending: list[tuple[str, Any]] = []
        queue = iter(files)
        while time_limit is None or time.monotonic() - started < time_limit:
            # A few files in flight, collected in order: which files are used never depends on their timing.
            for relative, path in itertools.islice(queue, in_flight - len(pending)):
                index_file = midi_root / relative / "index.json"
                if index_file.exists():
                    pending.append((relative, json.loads(index_file.read_text())))
                else:
                    target = str(midi_root / relative)
                    pending.append((relative, pool.submit(convert_music21_file, str(path), target)))
            if not pending:
                break
            relative, result = pending.pop(0)
            indexes.append((relative, result if isinstance(result, dict) else result.result()))
            if len(indexes) % 200 == 0:
                logger.info(
                    "music21: %d of %d files (%.0f s)", len(indexes), len(files), time.monotonic() - started
                )
        for _, result in pending:  # not started yet: left for a later run
            if not isinstance(result, dict):
                result.cancel()
    works = [(relative, name) for relative, index in indexes for name in index["works"]]
    chosen = balanced_selection(works, max_works)
    pieces = [
        CorpusPiece(
            "music21", f"{relative}#{name.removesuffix('.mid')}", (midi_root / relative / name).read_bytes()
        )
        for relative, name in chosen
    ]
    counts = {
        "files_in_corpus": len(music21_corpus_files()),
        "files_used": len(indexes),
        "works_converted": len(works),
        "works_failed_to_convert": sum(index["failed"] for _, index in indexes),
        "works_per_collection": dict(Counter(relative.split("/")[0] for relative, _ in chosen).most_common()),
    }
    return pieces, counts


def balanced_selection(works: Sequence[tuple[str, str]], max_works: int | None) -> list[tuple[str, str]]:
    """`max_works` of `(relative path, work)` drawn round-robin over the collections (the first folder of the
    path), each collection in its own order; all works, in their order, when `max_works` is None.

    One ABC file of the corpus holds hundreds of folk tunes: a plain prefix would be almost only folk songs.
    """
    if max_works is None or max_works >= len(works):
        return list(works)
    by_collection: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for work in works:
        by_collection[work[0].split("/")[0]].append(work)
    queues = [by_collection[name] for name in sorted(by_collection)]
    interleaved = [queue[i] for i in range(max(map(len, queues))) for queue in queues if i < len(queue)]
    return interleaved[:max_works]


MIDI_FILE_SUFFIXES = (".mid", ".midi")


def piano_corpus_pieces(folder: str | os.PathLike) -> tuple[list[CorpusPiece], dict[str, Any]]:
    """Every MIDI file under `folder`, its first-level subfolder as the source (`pop909`, `asap`, ...) and its
    path below that as the piece id, in sorted order (the corpus key then depends on contents only)."""
    root = Path(folder)
    if not root.is_dir():
        raise PoolingVQInputError(str(root), "--piano-corpus-dir is not a folder")
    pieces = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_FILE_SUFFIXES and p.is_file()):
        relative = path.relative_to(root)
        source = relative.parts[0] if len(relative.parts) > 1 else root.name
        pieces.append(CorpusPiece(source, "/".join(relative.parts[1:]) or relative.name, path.read_bytes()))
    if not pieces:
        raise PoolingVQInputError(str(root), "no .mid or .midi file under --piano-corpus-dir")
    return pieces, {"folder": str(root), "files": len(pieces)}


def piece_group(source: str, piece_id: str) -> str:
    """Pieces that must stay on one side of the held-out split: a POP909 song and its alternative versions
    (`001/001.mid`, `001/versions/001-v1.mid`: the song's folder), an ASAP work and its performances (the file's
    folder); any other piece is its own group."""
    parts = piece_id.split("/")
    if source == "pop909":
        return f"{source}/{parts[0]}"
    if source == "asap":
        return f"{source}/{'/'.join(parts[:-1])}"
    return f"{source}/{piece_id}"


@dataclass
class PretrainingCorpus:
    """Token rows of all pieces and where each row comes from.

    Attributes:
        tokens: int64 [N, max_length, 4], each piece split into rows, the last row of a piece padded.
        row_piece: int64 [N], the index in `pieces` of each row's piece.
        pieces: `(source, piece_id)` of each tokenized piece.
        counts: per source: pieces given, pieces tokenized, notes (= real tokens), rows; plus source details.
        key: `corpus_cache_key` of the pieces and tokenizer: equal keys, equal corpora.
    """

    tokens: np.ndarray
    row_piece: np.ndarray
    pieces: list[tuple[str, str]]
    counts: dict[str, Any]
    key: str

    @property
    def row_lengths(self) -> np.ndarray:
        """int64 [N]: real tokens in each row (they come first, padding after)."""
        return (self.tokens[..., 0] != PAD_TOKEN[0]).sum(-1)


def corpus_cache_key(pieces: Sequence[CorpusPiece], tokenizer: CPMidiTokenizer) -> str:
    """A digest of the pieces' ids and MIDI contents, the tokenizer's settings and the cache version."""
    digest = hashlib.sha256(
        json.dumps(
            {"version": CORPUS_CACHE_VERSION, "tokenizer": tokenizer.to_dict()}, sort_keys=True
        ).encode()
    )
    for piece in pieces:
        digest.update(f"{piece.source}\0{piece.piece_id}\0".encode())
        digest.update(hashlib.sha256(piece.midi).digest())
    return digest.hexdigest()[:24]


def tokenize_pieces(
    pieces: Sequence[CorpusPiece], tokenizer: CPMidiTokenizer, cache_dir: Path | None = None
) -> PretrainingCorpus:
    """Tokenize every piece into rows, or read the rows from `cache_dir/tokens-<key>/` when cached there.

    Pieces with no usable note (empty, only drums, every pitch outside 22..107) are skipped and counted.
    """
    key = corpus_cache_key(pieces, tokenizer)
    folder = None if cache_dir is None else cache_dir / f"tokens-{key}"
    if folder is not None and (folder / "corpus.json").exists():
        meta = json.loads((folder / "corpus.json").read_text())
        return PretrainingCorpus(
            tokens=np.load(folder / "tokens.npy"),
            row_piece=np.load(folder / "row_piece.npy"),
            pieces=[tuple(piece) for piece in meta["pieces"]],
            counts=meta["counts"],
            key=key,
        )
    rows, row_piece, kept = [], [], []
    counts: dict[str, Counter] = defaultdict(Counter)
    for piece in pieces:
        counts[piece.source]["pieces_given"] += 1
        try:
            piece_tokens = tokenizer.tokenize_score(load_score(piece.midi), source=piece.piece_id)
        except PoolingVQInputError as error:
            counts[piece.source]["pieces_without_usable_notes"] += 1
            logger.debug("left out: %s", error)
            continue
        piece_rows = split_into_rows(piece_tokens, tokenizer.max_length)
        counts[piece.source]["pieces"] += 1
        counts[piece.source]["notes"] += len(piece_tokens)
        counts[piece.source]["rows"] += len(piece_rows)
        rows.append(piece_rows)
        row_piece.append(np.full(len(piece_rows), len(kept), dtype=np.int64))
        kept.append((piece.source, piece.piece_id))
    if not rows:
        raise PoolingVQInputError("pre-training corpus", "no piece has a usable note: nothing to train on")
    corpus = PretrainingCorpus(
        tokens=np.concatenate(rows),
        row_piece=np.concatenate(row_piece),
        pieces=kept,
        counts={source: dict(counter) for source, counter in counts.items()},
        key=key,
    )
    if folder is not None:  # the package's atomic writer: a killed run leaves no half-written corpus behind
        with atomic_directory(folder) as building:
            np.save(building / "tokens.npy", corpus.tokens)
            np.save(building / "row_piece.npy", corpus.row_piece)
            (building / "corpus.json").write_text(json.dumps({"pieces": kept, "counts": corpus.counts}))
    return corpus


def build_corpus(args: PretrainingArguments, cache_dir: Path) -> PretrainingCorpus:
    """The whole pre-training corpus of a run: the emotion datasets' training splits and music21's corpus."""
    pieces: list[CorpusPiece] = []
    details: dict[str, Any] = {}
    for source, skip, data_dir in (
        ("emopia", args.no_emopia, args.emopia_dir),
        ("vgmidi", args.no_vgmidi, args.vgmidi_dir),
    ):
        if skip:
            continue
        folder = data_dir or default_shared_data_dir(source)
        if folder is None:
            logger.warning("%s: no --%s-dir and no ../shared/data/%s: left out", source, source, source)
            continue
        source_pieces, details[source] = emotion_training_pieces(source, folder, cache_dir / "datasets")
        pieces += source_pieces
    if args.piano_corpus_dir:
        source_pieces, details["piano_corpus"] = piano_corpus_pieces(args.piano_corpus_dir)
        pieces += source_pieces
    if not args.no_music21:
        source_pieces, details["music21"] = music21_pieces(
            cache_dir,
            max_files=args.max_music21_files,
            max_works=args.max_music21_works,
            time_limit=args.music21_time_limit,
            workers=args.conversion_workers,
        )
        pieces += source_pieces
    if not pieces:
        raise PoolingVQInputError(
            "pre-training corpus", "no source is left: give --emopia-dir, --vgmidi-dir or music21"
        )
    tokenizer = CPMidiTokenizer(mode="rescaled", max_length=args.max_positions)
    corpus = tokenize_pieces(pieces, tokenizer, cache_dir)
    for source, detail in details.items():
        corpus.counts.setdefault(source, {}).update(detail)
    return corpus


def save_corpus_file(corpus: PretrainingCorpus, path: str | os.PathLike) -> Path:
    """Write `corpus` to one compressed `.npz` (tokens as uint8: every CP class has fewer than 256 words).

    Ten times smaller than the token cache (the POP909 + ASAP + emotion corpus: 11 MB against 327 MB), so it can
    travel to a machine that has no MIDI files; `load_corpus_file` gives back the same rows, pieces and key.
    """
    if max(CP_VOCAB_SIZES) > 256:
        raise ValueError("a CP vocabulary no longer fits in uint8")
    meta = {"pieces": corpus.pieces, "counts": corpus.counts, "key": corpus.key}
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(
            handle,
            tokens=corpus.tokens.astype(np.uint8),
            row_piece=corpus.row_piece.astype(np.int32),
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
    return Path(path)


def load_corpus_file(path: str | os.PathLike) -> PretrainingCorpus:
    """The corpus `save_corpus_file` wrote, with the dtypes `tokenize_pieces` gives."""
    try:
        with np.load(path) as saved:
            meta = json.loads(saved["meta"].tobytes())
            return PretrainingCorpus(
                tokens=saved["tokens"].astype(np.int64),
                row_piece=saved["row_piece"].astype(np.int64),
                pieces=[tuple(piece) for piece in meta["pieces"]],
                counts=meta["counts"],
                key=meta["key"],
            )
    except (OSError, KeyError, ValueError) as error:
        raise PoolingVQInputError(str(path), f"not a corpus written by --export-corpus ({error})") from error


def heldout_pieces(corpus: PretrainingCorpus, fraction: float, seed: int) -> np.ndarray:
    """bool [num pieces]: a seeded `fraction` of each source's piece groups (at least one), held out.

    Held out by group (`piece_group`: a song with its versions, a work with its performances), not by row, so
    that nothing of a held-out piece, not even another performance of it, is seen in training.
    """
    rng = np.random.default_rng(seed)
    sources = np.array([source for source, _ in corpus.pieces])
    groups = np.array([piece_group(source, piece_id) for source, piece_id in corpus.pieces])
    heldout = np.zeros(len(corpus.pieces), dtype=bool)
    for source in sorted(set(sources)):
        source_groups = np.unique(groups[sources == source])
        if len(source_groups) < 2:
            continue
        count = min(max(round(fraction * len(source_groups)), 1), len(source_groups) - 1)
        chosen = rng.choice(source_groups, size=count, replace=False)
        heldout |= (sources == source) & np.isin(groups, chosen)
    return heldout


# ---------------------------------------------------------------------------------------------------------- objective


@dataclass
class MaskedTokens:
    """A batch prepared for masked CP modelling.

    Attributes:
        input_ids: long [B, L, 4], the tokens with the chosen ones masked, randomised or kept.
        chosen: bool [B, L], the tokens to predict (never padding).
        attention_mask: long [B, L], 1 on real tokens (from the original tokens).
    """

    input_ids: torch.Tensor
    chosen: torch.Tensor
    attention_mask: torch.Tensor


def mask_cp_tokens(
    tokens: torch.Tensor,
    generator: torch.Generator,
    mask_probability: float = 0.15,
    mask_share: float = 0.8,
    random_share: float = 0.1,
) -> MaskedTokens:
    """MIDI-BERT's masking of compound words, vectorised over the batch.

    Each row gets `max(1, round(mask_probability * real tokens))` chosen tokens, drawn uniformly among its real
    (non-padding) tokens, as MIDI-BERT draws a fixed count per row. Each chosen token independently becomes the
    MASK word in all four classes (`mask_share`), a random real word in each class (`random_share`), or stays.

    Args:
        tokens: long [B, L, 4] CP tokens, padding rows `PAD_TOKEN` after the real tokens or anywhere.
        generator: the source of randomness, on `tokens.device`.

    Returns:
        [`MaskedTokens`].
    """
    real = tokens[..., 0] != PAD_TOKEN[0]  # [B, L]
    device = tokens.device
    num_real = real.sum(-1)
    num_chosen = torch.where(
        num_real > 0, (num_real * mask_probability).round().clamp(min=1), torch.zeros_like(num_real)
    )
    # Ranking uniform scores draws a uniform subset of each row's real tokens; padding scores 2 ranks last.
    scores = torch.rand(real.shape, generator=generator, device=device).masked_fill(~real, 2.0)
    ranks = scores.argsort(-1).argsort(-1)
    chosen = ranks < num_chosen[:, None]

    action = torch.rand(real.shape, generator=generator, device=device)
    to_mask = chosen & (action < mask_share)
    to_randomise = chosen & (action >= mask_share) & (action < mask_share + random_share)
    num_words = torch.tensor(NUM_REAL_WORDS, device=device)
    random_words = (torch.rand(tokens.shape, generator=generator, device=device) * num_words).long()
    mask_words = torch.tensor(MASK_TOKEN, device=device).expand_as(tokens)
    input_ids = torch.where(to_mask[..., None], mask_words, tokens)
    input_ids = torch.where(to_randomise[..., None], random_words, input_ids)
    return MaskedTokens(input_ids=input_ids, chosen=chosen, attention_mask=real.long())


class MidiBertForMaskedCP(nn.Module):
    """MIDI-BERT with MIDI-BERT's four prediction heads (one linear layer per CP class over the last hidden state).

    `midibert` is a plain [`MidiBertModel`], saved on its own with `save_pretrained`; the heads are saved beside
    it in `mlm_heads.safetensors` (keys `heads.<i>.weight|bias`).
    """

    def __init__(self, config: MidiBertConfig) -> None:
        super().__init__()
        self.midibert = MidiBertModel(config)
        self.heads = nn.ModuleList(nn.Linear(config.hidden_size, size) for size in config.cp_vocab_sizes)
        for head in self.heads:
            self.midibert._init_weights(head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """[B, L, 4] tokens and [B, L] mask -> logits of each class, [B, L, vocab size of the class] x 4."""
        hidden = self.midibert(input_ids, attention_mask=attention_mask).last_hidden_state
        return [head(hidden) for head in self.heads]

    def save(self, folder: str | os.PathLike) -> None:
        """The encoder as a `MidiBertModel.from_pretrained` folder, and the heads in `mlm_heads.safetensors`."""
        self.midibert.save_pretrained(folder)
        heads = {
            f"heads.{name}": tensor.detach().cpu().contiguous()
            for name, tensor in self.heads.state_dict().items()
        }
        save_tensors_atomically(heads, Path(folder) / HEADS_FILENAME)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> MidiBertForMaskedCP:
        """The model that `save` wrote."""
        encoder = MidiBertModel.from_pretrained(folder)
        model = cls(encoder.config)
        model.midibert = encoder
        heads = load_file(str(Path(folder) / HEADS_FILENAME))
        model.heads.load_state_dict({name.removeprefix("heads."): tensor for name, tensor in heads.items()})
        return model


def initial_model(args: PretrainingArguments) -> MidiBertForMaskedCP:
    """A fresh model of the flags' size, or the one in `args.init_from` (its heads too, when saved there)."""
    if not args.init_from:
        return MidiBertForMaskedCP(args.midibert_config())
    if (Path(args.init_from) / HEADS_FILENAME).exists():
        return MidiBertForMaskedCP.load(args.init_from)
    encoder = MidiBertModel.from_pretrained(args.init_from)
    model = MidiBertForMaskedCP(encoder.config)
    model.midibert = encoder
    return model


def random_transpositions(
    tokens: torch.Tensor, max_shift: int, generator: torch.Generator | None
) -> torch.Tensor:
    """One random number of semitones per row in `[-max_shift, max_shift]`, limited per row so that no real pitch
    leaves the vocabulary's 0..PAD-1 (MIDI 22..107). `tokens`: long [B, L, 4] (padding holds PAD). Returns [B]."""
    pitch = tokens[..., 2]
    real = pitch < NUM_REAL_WORDS[2]
    highest = torch.where(real, pitch, torch.zeros_like(pitch)).amax(-1)  # [B]
    lowest = torch.where(real, pitch, torch.full_like(pitch, NUM_REAL_WORDS[2])).amin(-1)
    draw = torch.randint(-max_shift, max_shift + 1, (len(tokens),), generator=generator, device=tokens.device)
    return torch.maximum(torch.minimum(draw, NUM_REAL_WORDS[2] - 1 - highest), -lowest)


def transpose_rows(tokens: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`tokens` (long [B, L, 4]) with every row's real pitches moved by its `shift` ([B], from
    `random_transpositions`); padding stays PAD."""
    pitch = tokens[..., 2]
    shifted = tokens.clone()
    shifted[..., 2] = torch.where(pitch < NUM_REAL_WORDS[2], pitch + shift[:, None], pitch)
    return shifted


def class_loss_weights(loss_weighting: str) -> torch.Tensor:
    """float [4]: the weight of each class's cross-entropy; sums to 1."""
    if loss_weighting == "vocab":  # MIDI-BERT: sum_i n_i * loss_i / sum_i n_i
        sizes = torch.tensor(CP_VOCAB_SIZES, dtype=torch.float32)
        return sizes / sizes.sum()
    if loss_weighting == "mean":
        return torch.full((len(CP_CLASSES),), 1.0 / len(CP_CLASSES))
    raise ValueError(f"loss_weighting={loss_weighting!r}: choose 'vocab' or 'mean'")


def masked_cp_loss(
    logits: Sequence[torch.Tensor], targets: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The weighted cross-entropy of the four classes over the chosen tokens.

    Args:
        logits: 4 tensors [B, L, V_i].
        targets: long [B, L, 4], the original tokens.
        chosen: bool [B, L], the tokens to predict.
        weights: float [4], see `class_loss_weights`.

    Returns:
        (loss, per-class mean cross-entropy [4], per-class count of correct argmax predictions [4]).
    """
    chosen_targets = targets[chosen]  # [M, 4]
    class_losses, correct = [], []
    for index, class_logits in enumerate(logits):
        chosen_logits = class_logits[chosen].float()  # [M, V_i]
        class_losses.append(nn.functional.cross_entropy(chosen_logits, chosen_targets[:, index]))
        correct.append((chosen_logits.argmax(-1) == chosen_targets[:, index]).sum())
    class_losses_tensor = torch.stack(class_losses)
    return (
        (class_losses_tensor * weights.to(class_losses_tensor.device)).sum(),
        class_losses_tensor,
        torch.stack(correct),
    )


# ---------------------------------------------------------------------------------------------------------- data


class TokenRows(Dataset):
    """Rows of a corpus: item i is (tokens long [max_length, 4], its real length)."""

    def __init__(self, tokens: np.ndarray, indices: np.ndarray) -> None:
        self.tokens = torch.from_numpy(np.ascontiguousarray(tokens[indices], dtype=np.int64))
        self.lengths = (self.tokens[..., 0] != PAD_TOKEN[0]).sum(-1)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.tokens[index]


def collate_trimmed(rows: list[torch.Tensor]) -> torch.Tensor:
    """Stack rows [L, 4] into [B, L', 4], L' the longest real length rounded up to `LENGTH_MULTIPLE`.

    Only padding is cut: with relative attention and masked padding keys, the real tokens' outputs are the same.
    """
    batch = torch.stack(rows)
    longest = int((batch[..., 0] != PAD_TOKEN[0]).sum(-1).max())
    length = min(max(-(-longest // LENGTH_MULTIPLE) * LENGTH_MULTIPLE, LENGTH_MULTIPLE), batch.shape[1])
    return batch[:, :length]


class LengthBucketBatchSampler:
    """Batches of rows of similar length, so that trimming saves compute (many pieces are short folk tunes).

    Training: the rows are shuffled with (seed, epoch), cut into chunks of 50 batches, each chunk sorted by
    length and cut into batches, and the batches shuffled. Evaluation (`shuffle=False`): rows sorted by length.
    """

    CHUNK_BATCHES = 50

    def __init__(self, lengths: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.CHUNK_BATCHES
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            yield batch.tolist()

    def __len__(self) -> int:
        chunk = self.batch_size * self.CHUNK_BATCHES
        if not self.shuffle:
            return -(-len(self.lengths) // self.batch_size)
        full, rest = divmod(len(self.lengths), chunk)
        return full * self.CHUNK_BATCHES + -(-rest // self.batch_size)


def masking_generator(device: torch.device, *keys: int) -> torch.Generator:
    """A generator on `device` seeded from `keys` (seed, epoch, step, process): masks are reproducible on resume."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(seed)


def most_frequent_words(tokens: np.ndarray) -> torch.Tensor:
    """long [4]: the most frequent word of each class over the real tokens of `tokens` [N, L, 4] (the baseline)."""
    real = tokens[tokens[..., 0] != PAD_TOKEN[0]]  # [T, 4]
    return torch.tensor([int(np.bincount(real[:, i]).argmax()) for i in range(len(CP_CLASSES))])


# ---------------------------------------------------------------------------------------------------------- run


@dataclass
class PretrainingState(RunState):
    """`RunState` and what pre-training adds: the corpus it trains on, optimizer steps, the best held-out loss.

    A checkpoint within an epoch (`--save-every-steps`) saves `step_in_epoch`, the steps of the current epoch
    already taken: `--resume` skips as many batches of that epoch (same order: seeded by epoch)."""

    corpus_key: str = ""
    step: int = 0
    best_loss: float = math.inf
    best_metrics: dict[str, Any] = field(default_factory=dict)
    step_in_epoch: int = 0


@torch.no_grad()
def evaluate_masked(
    model: nn.Module,
    loader: DataLoader,
    accelerator: Any,
    weights: torch.Tensor,
    baseline_words: torch.Tensor,
    mask_probability: float,
    seed: int,
) -> dict[str, Any]:
    """Held-out masked-token loss and accuracy per class, with the same masks every call (seeded per batch),
    and the accuracy of always predicting the most frequent training word of each class on those tokens."""
    model.eval()
    device = accelerator.device
    loss_sums = torch.zeros(len(CP_CLASSES), device=device)
    correct = torch.zeros(len(CP_CLASSES), device=device)
    baseline_correct = torch.zeros(len(CP_CLASSES), device=device)
    all_correct = torch.zeros((), device=device)
    count = torch.zeros((), device=device)
    for batch_index, tokens in enumerate(loader):
        generator = masking_generator(device, seed, 1_000_000, batch_index, accelerator.process_index)
        masked = mask_cp_tokens(tokens, generator, mask_probability)
        logits = model(masked.input_ids, masked.attention_mask)
        _, class_losses, _ = masked_cp_loss(logits, tokens, masked.chosen, weights)
        targets = tokens[masked.chosen]  # [M, 4]
        predictions = torch.stack([class_logits[masked.chosen].argmax(-1) for class_logits in logits], -1)
        num = masked.chosen.sum()
        loss_sums += class_losses.float() * num
        correct += (predictions == targets).sum(0)
        all_correct += (predictions == targets).all(-1).sum()
        baseline_correct += (targets == baseline_words.to(device)).sum(0)
        count += num
    loss_sums, correct, baseline_correct, all_correct, count = (
        accelerator.reduce(tensor, "sum")
        for tensor in (loss_sums, correct, baseline_correct, all_correct, count)
    )
    total = max(float(count), 1.0)
    class_losses = (loss_sums / total).cpu()
    return {
        "loss": float((class_losses * weights).sum()),
        "masked_tokens": int(count),
        "loss_per_class": dict(zip(CP_CLASSES, class_losses.tolist(), strict=True)),
        "accuracy_per_class": dict(zip(CP_CLASSES, (correct / total).tolist(), strict=True)),
        "accuracy_all_four": float(all_correct) / total,
        "baseline_accuracy_per_class": dict(
            zip(CP_CLASSES, (baseline_correct / total).tolist(), strict=True)
        ),
    }


def default_cache_dir(args: PretrainingArguments) -> Path:
    """`--cache-dir`, or ~/.cache/poolingvq/pretrain-midi."""
    if args.cache_dir:
        return Path(args.cache_dir).expanduser()
    return Path.home() / ".cache" / "poolingvq" / "pretrain-midi"


def pretrain(args: PretrainingArguments) -> dict[str, Any]:
    """Build (or read) the corpus, pre-train, and write the model folder; returns the metrics it writes."""
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    output_dir = Path(args.output_dir)
    cache_dir = default_cache_dir(args)
    accelerator = make_accelerator(output_dir, mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    started = time.monotonic()
    with accelerator.main_process_first():
        corpus = load_corpus_file(args.corpus_file) if args.corpus_file else build_corpus(args, cache_dir)
    if corpus.tokens.shape[1] != args.max_positions:
        raise PoolingVQInputError(
            str(args.corpus_file),
            f"its rows hold {corpus.tokens.shape[1]} tokens, --max-positions is {args.max_positions}: "
            "pass the --max-positions it was exported with",
        )
    heldout_piece = heldout_pieces(corpus, args.heldout_fraction, args.seed)
    heldout = heldout_piece[corpus.row_piece]  # per row
    train_rows = TokenRows(corpus.tokens, np.flatnonzero(~heldout))
    heldout_rows = TokenRows(corpus.tokens, np.flatnonzero(heldout))
    corpus_summary = {
        "sources": corpus.counts,
        "rows": {"train": len(train_rows), "heldout": len(heldout_rows)},
        "notes": {"train": int(train_rows.lengths.sum()), "heldout": int(heldout_rows.lengths.sum())},
        "pieces": {
            "train": int((~heldout_piece).sum()),
            "heldout": int(heldout_piece.sum()),
        },
        "tokenizer": {"mode": "rescaled", "max_length": args.max_positions},
    }
    accelerator.print(f"corpus: {json.dumps(corpus_summary)} ({time.monotonic() - started:.0f} s)")
    baseline_words = most_frequent_words(train_rows.tokens.numpy())

    train_sampler = LengthBucketBatchSampler(train_rows.lengths, args.batch_size, args.seed)
    train_loader = DataLoader(train_rows, batch_sampler=train_sampler, collate_fn=collate_trimmed)
    heldout_loader = DataLoader(
        heldout_rows,
        batch_sampler=LengthBucketBatchSampler(
            heldout_rows.lengths, args.batch_size, args.seed, shuffle=False
        ),
        collate_fn=collate_trimmed,
    )
    model = initial_model(args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(train_sampler) // accelerator.num_processes)
    total_steps = min(args.epochs * steps_per_epoch, args.max_steps or math.inf)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(args.warmup_fraction * total_steps), total_steps
    )
    model, optimizer, train_loader, heldout_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, heldout_loader, scheduler
    )
    state = PretrainingState(corpus_key=corpus.key)
    checkpoints = output_dir / "checkpoints"
    resumed = register_and_resume(accelerator, [state], checkpoints, resume=args.resume)
    if resumed is not None:
        if state.corpus_key != corpus.key:
            raise PoolingVQInputError(
                "--resume",
                f"the checkpoint was trained on corpus {state.corpus_key}, these flags give {corpus.key}: pass the "
                "flags of the first run (--max-music21-files rather than a time limit gives the same corpus again)",
            )
        accelerator.print(
            f"resumed from {resumed} (epoch {state.epoch}, step {state.step}, {state.step_in_epoch} into the epoch)"
        )
    weights = class_loss_weights(args.loss_weighting)
    unwrapped = accelerator.unwrap_model(model)
    accelerator.print(
        f"model: {sum(p.numel() for p in unwrapped.parameters()):,} parameters; {total_steps} steps "
        f"({steps_per_epoch} per epoch) of {args.batch_size} rows"
    )

    def train_epoch(epoch: int) -> dict[str, Any]:
        # after a mid-epoch checkpoint, the epoch's first batches (same order: seeded by epoch) were trained on
        first_step = state.step_in_epoch
        loader = accelerator.skip_first_batches(train_loader, first_step)
        metrics = train_one_epoch(
            model, loader, optimizer, scheduler, accelerator, weights, args, state, total_steps,
            first_step_in_epoch=first_step, checkpoints=checkpoints,
        )  # fmt: skip
        state.step_in_epoch = 0
        return metrics

    def end_epoch(result: EpochResult) -> None:
        heldout_metrics = result.evaluation
        if result.improved:
            state.best_loss, state.best_metrics = heldout_metrics["loss"], heldout_metrics
        state.history.append(
            {"epoch": result.epoch, "step": state.step, "train": result.train, "heldout": heldout_metrics}
        )
        accuracies = ", ".join(
            f"{name} {value:.3f}" for name, value in heldout_metrics["accuracy_per_class"].items()
        )
        accelerator.print(
            f"epoch {result.epoch}: train loss {result.train['loss']:.4f}, "
            f"held-out loss {heldout_metrics['loss']:.4f}, held-out accuracy {accuracies}"
            + (" (best)" if result.improved else "")
        )

    run_epochs(
        accelerator,
        state,
        checkpoints,
        data_order=train_sampler,
        keep_going=lambda: state.epoch < args.epochs and state.step < total_steps,
        train_epoch=train_epoch,
        evaluate=lambda epoch: evaluate_masked(
            model, heldout_loader, accelerator, weights, baseline_words, args.mask_probability, args.seed
        ),
        is_better=lambda heldout_metrics: heldout_metrics["loss"] < state.best_loss,
        save_best=lambda: unwrapped.save(output_dir),
        end_epoch=end_epoch,
    )

    metrics = {
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "steps": state.step,
        "heldout": state.best_metrics,
        "history": state.history,
        "corpus": {**corpus_summary, "key": corpus.key},
        "config": unwrapped.midibert.config.to_diff_dict(),
        "arguments": dataclasses.asdict(args),
        "wall_seconds_this_run": time.monotonic() - started,
    }
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2))
        write_readme(output_dir, args, metrics)
    accelerator.end_training()
    return metrics


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
    weights: torch.Tensor,
    args: PretrainingArguments,
    state: PretrainingState,
    total_steps: int,
    first_step_in_epoch: int = 0,
    checkpoints: Path | None = None,
) -> dict[str, float]:
    """One pass over the training rows (or until `total_steps`); returns the mean loss and masked accuracy.

    `loader` starts `first_step_in_epoch` batches into the epoch when resuming from a mid-epoch checkpoint;
    with `args.save_every_steps`, a checkpoint goes to `checkpoints/epoch_<done>_step_<step>` every that many
    steps (`checkpoints.step_checkpoint`: names sort in the order they were written).
    """
    model.train()
    loss_sum, correct, masked_count, steps = 0.0, torch.zeros(len(CP_CLASSES)), 0, 0
    tokens_seen, window_started = 0, time.monotonic()
    for step_in_epoch, tokens in enumerate(loader, start=first_step_in_epoch):
        if state.step >= total_steps:
            break
        generator = masking_generator(
            accelerator.device, args.seed, state.epoch, step_in_epoch, accelerator.process_index
        )
        if args.transpose:
            tokens = transpose_rows(tokens, random_transpositions(tokens, args.transpose, generator))
        masked = mask_cp_tokens(tokens, generator, args.mask_probability)
        logits = model(masked.input_ids, masked.attention_mask)
        loss, _, step_correct = masked_cp_loss(logits, tokens, masked.chosen, weights)
        accelerator.backward(loss)
        if args.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        state.step += 1
        steps += 1
        loss_sum += float(loss.detach())
        correct += step_correct.cpu()
        masked_count += int(masked.chosen.sum())
        tokens_seen += int(masked.attention_mask.sum())
        if args.log_every and state.step % args.log_every == 0:
            elapsed = time.monotonic() - window_started
            accelerator.print(
                f"step {state.step}/{total_steps}: loss {loss_sum / steps:.4f}, lr {scheduler.get_last_lr()[0]:.2e}, "
                f"{tokens_seen / max(elapsed, 1e-9):.0f} real tokens/s",
                flush=True,
            )
            tokens_seen, window_started = 0, time.monotonic()
        if checkpoints is not None and args.save_every_steps and state.step % args.save_every_steps == 0:
            state.step_in_epoch = step_in_epoch + 1
            save_checkpoint(accelerator, step_checkpoint(checkpoints, state.epoch, state.step))
    accuracy = (correct / max(masked_count, 1)).tolist()
    return {
        "loss": loss_sum / max(steps, 1),
        "steps": steps,
        "accuracy_per_class": dict(zip(CP_CLASSES, accuracy, strict=True)),
    }


def write_readme(folder: Path, args: PretrainingArguments, metrics: dict[str, Any]) -> None:
    """A short model card: what was trained on what, and how well it fills in masked tokens."""
    heldout = metrics["heldout"]
    rows = "\n".join(
        f"| {name} | {heldout['accuracy_per_class'][name]:.3f} | {heldout['baseline_accuracy_per_class'][name]:.3f} |"
        for name in CP_CLASSES
    )
    sources = metrics["corpus"]["sources"]
    source_lines = "\n".join(
        f"- {source}: {counts.get('pieces', 0)} pieces, {counts.get('notes', 0):,} notes, {counts.get('rows', 0)} rows"
        for source, counts in sources.items()
    )
    defaults = PretrainingArguments()
    changed = {
        key: value
        for key, value in dataclasses.asdict(args).items()
        if key == "output_dir" or (key != "resume" and value != getattr(defaults, key))
    }
    command = "poolingvq pretrain-midi " + " ".join(
        f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}")
        for key, value in changed.items()
    )
    config = metrics["config"]
    content = f"""# A small MIDI-BERT pre-trained from scratch

A [MIDI-BERT](https://github.com/wazenmai/MIDI-BERT) encoder (compound-word tokens, relative-position BERT),
pre-trained with MIDI-BERT's own objective (15% of the compound words masked, each class predicted) on
symbolic music available offline: the training splits of EMOPIA and VGMIDI only (never a validation or test
clip) and music21's bundled corpus. Tokens: `CPMidiTokenizer(mode="rescaled")`. A stand-in for the official
weights, far smaller ({config.get("num_hidden_layers")} layers of {config.get("hidden_size")}) and trained far less.

```python
from poolingvq.midibert_poolingvq import MidiBertModel
encoder = MidiBertModel.from_pretrained("{folder}")
```

`{HEADS_FILENAME}` holds the four prediction heads (`MidiBertForMaskedCP.load` reads both).

## Corpus

{source_lines}

## Held-out masked-token accuracy (epoch {metrics["best_epoch"]} of {metrics["epochs_run"]}, {heldout["masked_tokens"]:,} masked tokens)

Held-out: {metrics["corpus"]["pieces"]["heldout"]} pieces never trained on. Baseline: always the most frequent word of the class in the training rows.

| class | accuracy | baseline |
| --- | --- | --- |
{rows}

## Command

```bash
{command}
```
"""
    (folder / "README.md").write_text(content)


# ---------------------------------------------------------------------------------------------------------- CLI


def pretrain_midi_command(namespace: argparse.Namespace) -> int:
    """`poolingvq pretrain-midi ...`: run `pretrain` with the parsed flags and print the held-out accuracy."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    args = dataclass_from_namespace(PretrainingArguments, namespace)
    if args.export_corpus:
        corpus = build_corpus(args, default_cache_dir(args))
        save_corpus_file(corpus, args.export_corpus)
        print(
            f"corpus {corpus.key}: {len(corpus.tokens):,} rows of {len(corpus.pieces):,} pieces in {args.export_corpus}"
        )
        return 0
    metrics = pretrain(args)
    accuracies = ", ".join(
        f"{name} {value:.3f}" for name, value in metrics["heldout"]["accuracy_per_class"].items()
    )
    print(
        f"held-out masked accuracy: {accuracies} (best epoch {metrics['best_epoch']}); model in {args.output_dir}"
    )
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="poolingvq.pretraining", description="pre-train a small MIDI-BERT")
    add_pretrain_midi_arguments(parser)
    return pretrain_midi_command(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":
    sys.exit(main())
