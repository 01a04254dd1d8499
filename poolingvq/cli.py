"""`poolingvq ...`: the command line. Thin on purpose: each subcommand parses its flags here and hands them to
the module that does the work, imported only when that subcommand runs. Building the parsers imports nothing but
the standard library (the flags of the heavy subcommands are in `arguments.py`), so `poolingvq --help` and every
subcommand's `--help` answer in a fraction of a second; a test checks that importing this module imports no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from . import arguments
from .errors_poolingvq import PoolingVQInputError


def _add_import_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-weights", help="build a full PoolingVQ model from official MERT and MIDI-BERT weights"
    )
    p.add_argument(
        "--mert",
        required=True,
        help="MERT-v1-95M: a Hub repo id (m-a-p/MERT-v1-95M) or a local folder (config.json + weights)",
    )
    p.add_argument(
        "--midibert",
        required=True,
        help="MIDI-BERT: an official checkpoint (.ckpt / .pth), a MidiBertModel.save_pretrained folder, "
        "or a Hub repo id holding either",
    )
    p.add_argument("--mert-revision", help="Hub branch, tag or commit of --mert (default: main)")
    p.add_argument("--midibert-revision", help="Hub branch, tag or commit of --midibert (default: main)")
    p.add_argument("--out", required=True, help="folder to write the PoolingVQ model to")
    p.set_defaults(handler="poolingvq.weights:import_weights_command")


def _add_tokenize_midi(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokenize-midi", help="MIDI files -> compound-word tokens, one int64 array [N, 512, 4]"
    )
    p.add_argument("files", nargs="+", help="MIDI files, tokenized in the order given")
    p.add_argument("--mode", choices=("midibert", "rescaled"), default="midibert")
    p.add_argument("--out", required=True, help="the .npy file to write")
    p.set_defaults(handler="poolingvq.tokenization_poolingvq:tokenize_midi_command")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="the Russell quadrant of each piece: audio and/or MIDI files, or folders of them",
        description="Classify pieces with one model load. x.mid and x.wav in the same folder are one piece; a "
        "file alone is a piece alone. One row per piece; a file that fails is named on stderr, the others still "
        "get answers, and the exit status is 0 only when every piece succeeded.",
    )
    p.add_argument("files", nargs="*", help="audio / MIDI files, or folders searched for them")
    p.add_argument("--audio", help="an audio file (wav, flac, ogg, mp3)")
    p.add_argument("--midi", help="a MIDI file (without --audio, the audio is synthesized from it)")
    p.add_argument("--example", choices=("Q1", "Q2", "Q3", "Q4"), help="write and classify an example piece")
    p.add_argument(
        "--model", help="a PoolingVQ model folder or Hub repo id (default: the model embedded in the package)"
    )
    p.add_argument("--revision", help="Hub branch, tag or commit of --model (default: main)")
    p.add_argument(
        "--top-k", type=int, help="how many quadrants to give per piece, best first (default: all)"
    )
    p.add_argument("--device", help="where the model runs: cpu, cuda, cuda:1, mps (default: cpu)")
    p.add_argument(
        "--no-transcription",
        action="store_true",
        help="read a recording given without its MIDI as audio alone, even where basic-pitch is installed to "
        "transcribe its notes (the default then); the output's 'heard' says which was done",
    )
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--csv", action="store_true", help="print CSV (one row per piece) instead of a table")
    p.set_defaults(handler="poolingvq.predict:predict_command")


def _add_prepare_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-dataset", help="EMOPIA / VGMIDI with their official splits -> DatasetDict + Parquet + card"
    )
    arguments.add_prepare_dataset_arguments(p)
    p.set_defaults(handler="poolingvq.data.prepare:prepare_dataset_command")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train PoolingVQ with the paper's recipe (Accelerate; feature cache)")
    arguments.add_training_arguments(p)
    p.set_defaults(handler="poolingvq.training:train_command")


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment", help="the paper's ablations / codebook sweep over seeds: tables and plots"
    )
    arguments.add_experiment_arguments(p)
    p.set_defaults(handler="poolingvq.experiments:experiment_command")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="launch the browser demo (the Hugging Face Space's app) on this machine")
    p.add_argument(
        "--model", help="a PoolingVQ model folder or Hub repo id (default: the model embedded in the package)"
    )
    p.add_argument("--revision", help="Hub branch, tag or commit of --model (default: main)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 serves the network)")
    p.add_argument("--port", type=int, help="port to serve on (default: 7860, or the next free one)")
    p.set_defaults(handler="poolingvq.demo:demo_command")


def _add_pretrain_midi(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain-midi", help="pre-train a small MIDI-BERT (masked CP tokens) on offline symbolic music"
    )
    arguments.add_pretrain_midi_arguments(p)
    p.set_defaults(handler="poolingvq.pretraining:pretrain_midi_command")


def _add_push_to_hub(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push-to-hub",
        help="upload a model folder (weights, config, code, processor, card, metrics) to a Hub model repo",
        description="Upload exactly the model of DIR in one commit: its top-level files, never checkpoints/, "
        "logs/ or best_trained_weights.safetensors. Code files the folder lacks for trust_remote_code are "
        "added from this package, and the card's usage is pointed at REPO_ID. Credentials: HF_TOKEN or "
        "`hf auth login`.",
    )
    p.add_argument("folder", metavar="DIR", help="the model folder (e.g. the output of poolingvq train)")
    p.add_argument("repo_id", metavar="REPO_ID", help="the Hub model repo, org/name (created when missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing one is kept)")
    p.add_argument("--revision", help="the branch to commit to, created when missing (default: main)")
    p.add_argument("--commit-message", help="default: 'Upload PoolingVQ model'")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")
    p.set_defaults(handler="poolingvq.publish:push_to_hub_command")


def _add_export_space(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-space",
        help="write a Hugging Face Space folder (Gradio app, card, pinned requirements, the code it runs)",
        description="Write a Space that builds from its own folder: app.py, README.md with the Space's YAML, "
        "a requirements.txt of pinned PyPI packages only, and this package's code the app runs (with the "
        "embedded model, or a local model folder, inside it).",
    )
    p.add_argument(
        "folder", metavar="DIR", help="the Space folder to write (created; its files are replaced)"
    )
    p.add_argument(
        "--model",
        help="a model folder (copied into the Space) or Hub repo id (loaded by the Space at start) "
        "(default: the model embedded in the package)",
    )
    p.add_argument("--title", help="the Space's title (default: one naming the model)")
    p.set_defaults(handler="poolingvq.space:export_space_command")


# (flag builder, in the order `--help` lists them)
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_predict,
    _add_demo,
    _add_push_to_hub,
    _add_export_space,
    _add_import_weights,
    _add_tokenize_midi,
    _add_prepare_dataset,
    _add_train,
    _add_experiment,
    _add_pretrain_midi,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolingvq", description="PoolingVQ music emotion recognition")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, function_name = args.handler.split(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    try:
        return int(handler(args) or 0)
    except PoolingVQInputError as error:  # a user's file is at fault: say so in one line, no traceback
        print(f"poolingvq {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
