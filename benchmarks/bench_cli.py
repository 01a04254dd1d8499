"""The command line's start-up: `poolingvq --help`, every subcommand's `--help`, and `predict` on 1 and on 20 pieces.

    python benchmarks/bench_cli.py                 # 30 s pieces (audio + MIDI pairs), 3 repeats, the embedded model
    python benchmarks/bench_cli.py --repeats 1 --seconds 10

Each measurement is the wall time of a fresh process, as a user's shell sees it (median of `--repeats` runs).
The pieces are the project's example pieces (`poolingvq.examples`), each written as `x.mid` beside `x.wav`
synthesized from it, so `predict FOLDER` pairs them and classifies audio + MIDI, as for a user's own recordings.
Targets: `--help` (each) under 1 s; 20 pieces in one call far below 20 calls of one piece (the start-up, importing
torch and transformers and loading the model, is paid once per call, not per piece).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUBCOMMANDS = (
    "predict",
    "demo",
    "import-weights",
    "tokenize-midi",
    "prepare-dataset",
    "train",
    "experiment",
    "pretrain-midi",
)


def wall_time(command: list[str], repeats: int) -> float:
    """Median wall seconds of `command` run `repeats` times in fresh processes (each must succeed)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_pieces(folder: Path, count: int, seconds: float) -> None:
    """`count` example pieces, each `piece_NN.mid` with `piece_NN.wav` synthesized from it at 24 kHz."""
    import soundfile as sf

    from poolingvq.examples import write_example_midi
    from poolingvq.synthesis_poolingvq import synthesize_midi

    for index in range(count):
        midi = write_example_midi(folder / f"piece_{index:02d}.mid", f"Q{index % 4 + 1}", seconds, seed=index)
        sf.write(folder / f"piece_{index:02d}.wav", synthesize_midi(midi, max_seconds=seconds), 24000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pieces", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each piece")
    parser.add_argument("--model", help="a model folder (default: the embedded model)")
    args = parser.parse_args()
    poolingvq = shutil.which("poolingvq") or f"{sys.executable} -m poolingvq.cli"
    command = poolingvq.split()
    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, {args.repeats} repeats"
    )

    help_time = wall_time([*command, "--help"], args.repeats)
    sub_times = {name: wall_time([*command, name, "--help"], args.repeats) for name in SUBCOMMANDS}
    slowest = max(sub_times, key=sub_times.get)
    print(f"poolingvq --help                {help_time:6.2f} s   (target < 1 s)")
    print(f"slowest subcommand --help       {sub_times[slowest]:6.2f} s   ({slowest}; target < 1 s)")
    import_time = wall_time([sys.executable, "-c", "import poolingvq"], args.repeats)
    print(f"python -c 'import poolingvq'    {import_time:6.2f} s")

    model = ["--model", args.model] if args.model else []
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as root:
        one, many = Path(root) / "one", Path(root) / "many"
        one.mkdir()
        many.mkdir()
        write_pieces(many, args.pieces, args.seconds)
        for name in ("piece_00.mid", "piece_00.wav"):
            shutil.copy(many / name, one / name)
        one_time = wall_time([*command, "predict", str(one), *model], args.repeats)
        many_time = wall_time([*command, "predict", str(many), *model], args.repeats)
    print(f"predict, 1 piece ({args.seconds:.0f} s, audio + MIDI)  {one_time:6.2f} s")
    print(
        f"predict, {args.pieces} pieces in one call    {many_time:6.2f} s   ({many_time / args.pieces:.2f} s a piece)"
    )
    print(
        f"  each further piece: {(many_time - one_time) / (args.pieces - 1):.2f} s; {args.pieces} calls of one piece "
        f"would take ~{args.pieces * one_time:.0f} s ({args.pieces * one_time / many_time:.1f}x the one call)"
    )


if __name__ == "__main__":
    main()
