"""What transcribing a recording alone costs in `pipeline("music-emotion")`, against reading it as audio alone.

    python benchmarks/bench_transcription.py                    # 4 recordings of 30 s, the embedded model
    python benchmarks/bench_transcription.py --seconds 60 --clips 2

Each recording is an example piece (`poolingvq.examples`) synthesized and written as a 44.1 kHz 16-bit WAV. The
embedded model classifies each one with `transcribe=False` (audio alone) and `transcribe=True` (its notes
transcribed by basic-pitch, the pipeline's default where basic-pitch is installed), alternating, so that a busy
machine slows both alike. Printed: the one-time cost of loading basic-pitch (its imports and ONNX session), the
median seconds per recording each way and their ratio, and the transcription alone (`transcribe_audio` on the
decoded waveform). Target: a 30 s recording with its notes transcribed answers within 2 s on one CPU thread, so
the Space stays interactive. The ratio to the audio alone is printed too: the embedded model is small, so the
transcriber dominates it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from poolingvq.examples import write_example_midi
from poolingvq.feature_extraction_poolingvq import load_audio
from poolingvq.predict import load_pipeline
from poolingvq.synthesis_poolingvq import synthesize_midi
from poolingvq.transcription_poolingvq import _basic_pitch, transcribe_audio, transcription_available

FILE_SAMPLING_RATE = 44100
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 avoids spin-waits on a busy box)"
    )
    args = parser.parse_args()
    if not transcription_available():
        raise SystemExit("basic-pitch is not installed: bash scripts/install_transcription.sh")
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    _basic_pitch()
    print(
        f"loading basic-pitch (imports, ONNX session): {time.perf_counter() - started:.2f} s, once per process"
    )

    classify, _ = load_pipeline()
    with tempfile.TemporaryDirectory() as folder:
        recordings = []
        for index in range(args.clips):
            midi = write_example_midi(
                Path(folder) / f"clip{index}.mid", QUADRANTS[index % 4], seconds=args.seconds + 1, seed=index
            )
            audio = synthesize_midi(
                midi, sample_rate=FILE_SAMPLING_RATE, max_seconds=args.seconds, level="velocity"
            )
            path = Path(folder) / f"clip{index}.wav"
            sf.write(path, audio, FILE_SAMPLING_RATE, subtype="PCM_16")
            recordings.append(str(path))
        classify(
            recordings[0], transcribe=True
        )  # warm-up: the first transcription compiles librosa's kernels
        alone, transcribed, transcriber = [], [], []
        for path in recordings:
            for times, transcribe in ((alone, False), (transcribed, True)):
                started = time.perf_counter()
                classify(path, transcribe=transcribe)
                times.append(time.perf_counter() - started)
            waveform = load_audio(path, target_sampling_rate=24000)
            started = time.perf_counter()
            transcribe_audio(waveform, 24000)
            transcriber.append(time.perf_counter() - started)

    audio_alone, with_notes = statistics.median(alone), statistics.median(transcribed)
    print(f"{args.clips} recordings of {args.seconds:g} s, median seconds per recording:")
    print(f"  audio alone (transcribe=False)      {audio_alone:.3f} s")
    print(f"  with its notes transcribed          {with_notes:.3f} s")
    print(f"  of which the transcription alone    {statistics.median(transcriber):.3f} s")
    print(f"ratio transcribed / audio alone: {with_notes / audio_alone:.2f}x")
    per_30_seconds = with_notes * 30 / args.seconds
    verdict = "met" if per_30_seconds <= 2 else "missed"
    print(f"a 30 s recording transcribed: {per_30_seconds:.2f} s (target <= 2 s: {verdict})")


if __name__ == "__main__":
    main()
