"""`poolingvq predict`: pieces (audio and/or MIDI files, or folders of them) -> Russell quadrants with scores.

The model is loaded once for all the pieces of a call, so a folder of pieces pays the start-up (importing torch and
transformers, loading the weights) once. Each piece is classified on its own: a bad file is named on stderr and the
others still get their answers; the exit status is 0 only when every piece was classified.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the package keeps its embedded, trained model (issue 7); absent until one is shipped.
EMBEDDED_MODEL_DIR = Path(__file__).with_name("embedded") / "poolingvq-emopia"


def embedded_model_dir() -> Path | None:
    """The folder of the model shipped inside the package, or None when this version ships none."""
    return EMBEDDED_MODEL_DIR if (EMBEDDED_MODEL_DIR / "config.json").exists() else None


def describe_model(folder: Path) -> str:
    """The folder, and for the embedded model what it is and how well it did (read from its `metrics.json`)."""
    if folder.resolve() != EMBEDDED_MODEL_DIR.resolve():
        return str(folder)
    test = json.loads((folder / "metrics.json").read_text())["test"]
    return (
        f"{folder} (the embedded model: log-mel + a small MIDI-BERT trained here, no MERT; EMOPIA test accuracy "
        f"{test['accuracy']:.2f}, macro-F1 {test['macro_f1']:.2f}; see its README.md)"
    )


def load_pipeline(
    model: str | Path | None = None, revision: str | None = None, **kwargs: Any
) -> tuple[Any, str]:
    """A `"music-emotion"` pipeline on `model` (a folder, or a Hub repo id at `revision`), else on the embedded
    model, else on an UNTRAINED tiny model.

    The pipeline runs this package's own classes (not the copies of the code in the model folder), so its errors
    are `poolingvq.PoolingVQInputError` (also for a model that cannot be found). Returns the pipeline and a
    description of the model it runs (which says when the scores mean nothing).
    """
    from transformers import pipeline

    from .errors_poolingvq import PoolingVQInputError
    from .hub import is_local, resolve_model_dir
    from .pipeline_music_emotion import MusicEmotionPipeline

    folder = resolve_model_dir(model, revision, flag="--model") if model is not None else embedded_model_dir()
    if folder is not None:
        try:
            classify = pipeline(
                "music-emotion",
                model=str(folder),
                pipeline_class=MusicEmotionPipeline,
                trust_remote_code=False,
                **kwargs,
            )
        except PoolingVQInputError:
            raise
        except TypeError as error:
            if "unknown argument" in str(error):  # the caller's misspelt option, not the folder's fault
                raise
            raise PoolingVQInputError(
                "--model", f"{folder} is not a PoolingVQ model folder that loads ({error})"
            ) from error
        except (OSError, ValueError, KeyError) as error:
            if model is None:  # the embedded model is the package's own: its failure is a bug, not the user's
                raise
            # A folder without weights, with a broken or foreign config.json...: transformers' long traceback
            # becomes one line that names the folder and what is wrong with it (the last line of transformers'
            # message: when it tried several classes, the original error is quoted there).
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(error).__name__
            raise PoolingVQInputError(
                "--model", f"{folder} is not a PoolingVQ model folder that loads ({reason})"
            ) from error
        description = describe_model(folder)
        if model is not None and not is_local(model):  # a Hub repo: its id, then the cached snapshot it ran
            description = f"{model} ({description})"
        return classify, description

    from .configuration_poolingvq import PoolingVQConfig
    from .modeling_poolingvq import PoolingVQForMusicEmotion
    from .processing_poolingvq import PoolingVQProcessor

    config = PoolingVQConfig.from_preset("tiny")
    untrained = PoolingVQForMusicEmotion(config).eval()
    processor = PoolingVQProcessor.for_model(config, midi_mode="rescaled")
    description = (
        "UNTRAINED tiny model (random weights: no trained model is embedded yet; the scores mean nothing)"
    )
    classify = pipeline(
        "music-emotion", model=untrained, processor=processor, pipeline_class=MusicEmotionPipeline, **kwargs
    )
    return classify, description


def format_scores(scores: list[dict[str, Any]], meanings: dict[str, str]) -> str:
    lines = [f"{'quadrant':<9}{'score':>7}  meaning"]
    lines += [f"{s['label']:<9}{s['score']:>7.3f}  {meanings.get(s['label'], '')}" for s in scores]
    return "\n".join(lines)


#: Audio files a folder is searched for (what libsndfile reads); MIDI files are the MIDI reader's `MIDI_SUFFIXES`.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


@dataclass
class Piece:
    """One thing to classify: an audio file, a MIDI file, or both (the same piece's recording and notes)."""

    audio: str | None = None
    midi: str | None = None

    @property
    def name(self) -> str:
        return " + ".join(path for path in (self.audio, self.midi) if path is not None)

    def inputs(self) -> dict[str, str]:
        return {
            key: value for key, value in (("audio", self.audio), ("midi", self.midi)) if value is not None
        }


def collect_pieces(paths: Iterable[str | os.PathLike]) -> list[Piece]:
    """Files and folders -> pieces, in the order given (a folder's files sorted, searched recursively).

    `x.mid` and `x.wav` in the same folder are one piece (audio and MIDI); a file alone is a piece alone. A named file
    counts whatever its suffix (MIDI by its suffix, else audio), a folder's only by theirs; a path that does not exist
    is kept, as a piece whose error will name it.
    """
    from .tokenization_poolingvq import MIDI_SUFFIXES  # here: the module loads symusic, --help should not

    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(
                child
                for child in path.rglob("*")
                if child.is_file() and child.suffix.lower() in AUDIO_SUFFIXES + MIDI_SUFFIXES
            )
        else:
            files.append(path)
    pieces: dict[tuple[Path, str], list[Piece]] = {}  # (folder, stem) -> its pieces, in order
    for file in dict.fromkeys(files):  # a file named twice is classified once
        is_midi = file.suffix.lower() in MIDI_SUFFIXES
        same_stem = pieces.setdefault((file.parent, file.stem), [])
        # pair with a piece of the same stem that lacks this modality (x.wav + x.mid), else start a new one
        partner = next((p for p in same_stem if (p.midi if is_midi else p.audio) is None), None)
        if partner is None:
            partner = Piece()
            same_stem.append(partner)
        if is_midi:
            partner.midi = str(file)
        else:
            partner.audio = str(file)
    return [piece for group in pieces.values() for piece in group]


def check_device(device: str | None) -> None:
    """Refuse a `--device` torch does not know, or one this machine does not have, in one line."""
    if device is None:
        return
    import torch

    from .errors_poolingvq import PoolingVQInputError

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as error:
        raise PoolingVQInputError("--device", f"{device!r} is not a torch device ({error})") from error
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(kind, True):
        raise PoolingVQInputError("--device", f"{device!r}: this machine has no {kind} device")


@dataclass
class Result:
    """A piece's scores, best first, or why it has none (`input_error`: its file is at fault, not the program)."""

    piece: Piece
    scores: list[dict[str, Any]] | None = None
    error: str | None = None
    input_error: bool = False
    heard: str | None = None  # what the model answered from, e.g. "audio only (no MIDI)"


def classify_pieces(
    classify: Any, pieces: Sequence[Piece], top_k: int | None = None, transcribe: bool | None = None
) -> list[Result]:
    """Every piece classified on its own, in order: a failure is recorded with a message naming its file.
    `transcribe`: the pipeline's, for a recording without its MIDI (None: when basic-pitch is installed)."""
    from .errors_poolingvq import PoolingVQInputError

    results = []
    for piece in pieces:
        try:
            details = classify(piece.inputs(), top_k=top_k, return_details=True, transcribe=transcribe)
            results.append(Result(piece, scores=details["scores"], heard=details.get("heard")))
        except (PoolingVQInputError, RuntimeError) as error:  # the file's fault, or non-finite scores
            message = str(error)
            if not any(path in message for path in piece.inputs().values()):
                message = f"{piece.name}: {message}"
            results.append(Result(piece, error=message, input_error=isinstance(error, PoolingVQInputError)))
    return results


def print_rows(results: Sequence[Result], description: str, output: str, meanings: dict[str, str]) -> None:
    """One row per piece: a table (with the best quadrant's meaning), JSON, or CSV (`label_1, score_1, ...`)."""
    if output == "json":
        pieces = [
            {
                **r.piece.inputs(),
                **({"scores": r.scores, "heard": r.heard} if r.error is None else {"error": r.error}),
            }
            for r in results
        ]
        print(json.dumps({"model": description, "pieces": pieces}, indent=2))
        return
    if output == "csv":
        ranks = max((len(r.scores) for r in results if r.scores), default=0)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        header = ["audio", "midi"]
        for rank in range(1, ranks + 1):
            header += [f"label_{rank}", f"score_{rank}"]
        writer.writerow([*header, "heard", "error"])
        for r in results:
            row = [r.piece.audio or "", r.piece.midi or ""]
            for rank in range(ranks):
                row += [r.scores[rank]["label"], f"{r.scores[rank]['score']:.6f}"] if r.scores else ["", ""]
            writer.writerow([*row, r.heard or "", r.error or ""])
        return
    print(f"model: {description}")
    width = max(len("piece"), *(len(r.piece.name) for r in results))
    print(f"{'piece':<{width}}  scores (best first)")
    for r in results:
        if r.scores is None:
            print(f"{r.piece.name:<{width}}  failed (the error is on stderr)")
            continue
        ranked = "  ".join(f"{s['label']} {s['score']:.3f}" for s in r.scores)
        heard = f"; heard {r.heard}" if r.heard else ""
        print(f"{r.piece.name:<{width}}  {ranked}  ({meanings.get(r.scores[0]['label'], '')}{heard})")


def predict_command(args: argparse.Namespace) -> int:
    """Classify the files and folders given (one row per piece), or the one piece of `--audio`/`--midi`/`--example`
    (the detailed table of its four quadrants, as before). Exit status: 0 when every piece was classified, 2 when
    some input could not be used (each named on stderr), 1 when something else failed."""
    audio, midi = args.audio, args.midi
    paths = list(getattr(args, "files", None) or [])
    output = "json" if args.json else "csv" if getattr(args, "csv", False) else "table"
    if args.example:
        from .examples import write_example_midi

        midi = str(
            write_example_midi(Path(tempfile.mkdtemp(prefix="poolingvq-")) / "example.mid", args.example)
        )
    if audio is None and midi is None and not paths:
        print(
            "poolingvq predict: give files or folders, --audio and/or --midi, or --example Q1..Q4",
            file=sys.stderr,
        )
        return 2
    pieces = collect_pieces(paths)
    if audio is not None or midi is not None:
        pieces.append(Piece(audio=audio, midi=midi))
    if not pieces:
        print(f"poolingvq predict: no audio or MIDI files in {', '.join(paths)}", file=sys.stderr)
        return 2
    top_k = getattr(args, "top_k", None)
    transcribe = False if getattr(args, "no_transcription", False) else None
    check_device(getattr(args, "device", None))
    device = {"device": args.device} if getattr(args, "device", None) else {}
    classify, description = load_pipeline(args.model, getattr(args, "revision", None), **device)
    labels = classify.model.config.num_labels
    if top_k is not None and not 1 <= top_k <= labels:
        print(f"poolingvq predict: --top-k must be in 1..{labels}, got {top_k}", file=sys.stderr)
        return 2

    from .configuration_poolingvq import QUADRANT_MEANINGS

    meanings = dict(QUADRANT_MEANINGS, **(getattr(classify.model.config, "label_meanings", None) or {}))
    if not paths:  # one piece from the flags: its four quadrants in detail, as `predict` has always printed
        inputs = pieces[0].inputs()
        # a bad file raises: main() names it in one line (status 2)
        details = classify(inputs, top_k=top_k, return_details=True, transcribe=transcribe)
        scores, heard = details["scores"], details.get("heard")
        if output == "json":
            print(
                json.dumps(
                    {"model": description, "inputs": inputs, "scores": scores, "heard": heard}, indent=2
                )
            )
        elif output == "csv":
            print_rows([Result(pieces[0], scores=scores, heard=heard)], description, output, meanings)
        else:
            print(f"model: {description}")
            print(f"input: {', '.join(f'{k} {v}' for k, v in inputs.items())}")
            print(f"heard: {heard}")
            print(format_scores(scores, meanings))
        return 0

    results = classify_pieces(classify, pieces, top_k, transcribe)
    print_rows(results, description, output, meanings)
    failures = [r for r in results if r.error is not None]
    for failure in failures:
        print(f"poolingvq predict: {failure.error}", file=sys.stderr)
    if not failures:
        return 0
    print(f"poolingvq predict: {len(failures)} of {len(results)} pieces failed", file=sys.stderr)
    return 2 if all(failure.input_error for failure in failures) else 1
