"""pipeline("music-emotion") against the bare encoders: the pipeline's overhead and its batch throughput.

    python benchmarks/bench_pipeline.py                          # 60 s clips, 4 of them, the paper's architecture
    python benchmarks/bench_pipeline.py --seconds 20 --clips 4   # shorter (MERT on 60 s takes a while on a CPU)

The full-size architecture (`PoolingVQConfig.from_preset("paper")`: MERT-v1-95M + MIDI-BERT, random weights) is
saved with `PoolingVQProcessor.for_model(config)` to a temporary folder and loaded as the package's pipeline. Each
clip is an example piece (`poolingvq.examples`) synthesized and written as a 44.1 kHz 16-bit WAV beside its MIDI.
Measured side by side in one run, alternating so that a busy machine slows every contender alike:
  (1) bare: `get_audio_features(input_values)` + `get_midi_features(ids, mask)` on tensors prepared beforehand,
      under torch.inference_mode (and under torch.no_grad, the context transformers' Pipeline.forward uses);
  (2) the whole pipeline call on the WAV + MIDI files: overhead = (pipeline - bare) / bare, target <= 10 %.
      Each stage is also clocked inside the pipeline calls themselves, so the split (and the overhead over the
      encoders of the same call) does not depend on the machine staying equally busy between calls;
  (3) throughput of `--clips` clips with batch_size=1 vs batch_size=4, with the same split.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

from poolingvq import feature_extraction_poolingvq
from poolingvq.configuration_poolingvq import PoolingVQConfig
from poolingvq.examples import write_example_midi
from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion
from poolingvq.predict import load_pipeline
from poolingvq.processing_poolingvq import PoolingVQProcessor
from poolingvq.synthesis_poolingvq import synthesize_midi

FILE_SAMPLING_RATE = 44100  # a CD-rate file, so the pipeline's resampling to 24 kHz is on the measured path
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
ENCODER_STAGES = ("audio encoder", "MIDI encoder")


def write_clips(folder: Path, count: int, seconds: float) -> list[dict[str, str]]:
    """`count` pieces as {"audio": WAV path, "midi": MIDI path}, every WAV exactly `seconds` long.

    The MIDI is written a second longer than the audio is cut, so no clip falls short: equal lengths let a batch
    run the audio encoder as one call, as it does for real pieces cropped to 60 s.
    """
    clips = []
    for index in range(count):
        midi = write_example_midi(
            folder / f"clip{index}.mid", QUADRANTS[index % 4], seconds=seconds + 1, seed=index
        )
        audio = synthesize_midi(midi, sample_rate=FILE_SAMPLING_RATE, max_seconds=seconds)
        sf.write(folder / f"clip{index}.wav", audio, FILE_SAMPLING_RATE, subtype="PCM_16")
        clips.append({"audio": str(folder / f"clip{index}.wav"), "midi": str(midi)})
    return clips


def save_paper_model(folder: Path) -> None:
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("paper")
    PoolingVQForMusicEmotion(config).eval().save_pretrained(folder)
    PoolingVQProcessor.for_model(config).save_pretrained(folder)


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


class StageClock:
    """Wall time per stage of a pipeline call, summed over the calls made while `clocking()` is active.

    Each stage is a callable looked up on an instance at call time (a pipeline or processor method, a module's
    `forward`, a module-level function); it is replaced by a timed wrapper and restored afterwards. None of the
    wrapped stages calls another, so their times add up.
    """

    def __init__(self, classify: Any) -> None:
        model = classify.model
        self.targets = {
            "decode + resample": (feature_extraction_poolingvq, "load_audio"),
            "tokenize MIDI": (classify.processor, "tokenize_midi"),
            "preprocess": (classify, "preprocess"),  # contains the two above, and normalising + padding
            "audio encoder": (model, "get_audio_features"),
            "MIDI encoder": (model, "get_midi_features"),
            "quantizer": (model.quantizer, "forward"),
            "fusion": (model.fusion, "forward"),
            "head": (model.classifier, "forward"),
            "postprocess": (classify, "postprocess"),
        }
        self.seconds: dict[str, float] = defaultdict(float)
        self.context: dict[str, bool] = {}

    def _timed(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if stage == "audio encoder":
                self.context.update(grad=torch.is_grad_enabled(), inference=torch.is_inference_mode_enabled())
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return wrapper

    @contextlib.contextmanager
    def clocking(self) -> Iterator[None]:
        originals = {stage: getattr(owner, name) for stage, (owner, name) in self.targets.items()}
        # methods live on the class: deleting the wrapper from the instance restores them
        on_instance = {stage: name in vars(owner) for stage, (owner, name) in self.targets.items()}
        for stage, (owner, name) in self.targets.items():
            setattr(owner, name, self._timed(stage, originals[stage]))
        try:
            yield
        finally:
            for stage, (owner, name) in self.targets.items():
                if on_instance[stage]:
                    setattr(owner, name, originals[stage])
                else:
                    delattr(owner, name)

    def split(self, total: float) -> dict[str, float]:
        """Seconds of each stage, with preprocess split into its parts and the unclocked rest as pipeline glue."""
        seconds = dict(self.seconds)
        preprocess = seconds.pop("preprocess")
        seconds["normalise + pad + tensors"] = (
            preprocess - seconds["decode + resample"] - seconds["tokenize MIDI"]
        )
        seconds["pipeline glue (unclocked rest)"] = total - sum(seconds.values())
        return seconds


def print_split(split: dict[str, float], total: float, indent: str = "      ") -> None:
    encoders = sum(split[stage] for stage in ENCODER_STAGES)
    for stage, seconds in split.items():
        print(f"{indent}{stage:<40}{seconds:9.3f} s  {seconds / total:7.2%} of the call")
    overhead = (total - encoders) / encoders
    print(f"{indent}{'overhead over its own encoders':<40}{overhead:9.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each clip (the paper's 60 s)")
    parser.add_argument("--clips", type=int, default=4, help="clips for the throughput comparison")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds of each measurement (medians)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    clips = write_clips(folder, args.clips, args.seconds)
    save_paper_model(folder / "model")
    classify, _ = load_pipeline(folder / "model")
    model, processor, clip = classify.model, classify.processor, clips[0]
    print(
        f"paper architecture (random weights), {args.seconds:g} s clips at {FILE_SAMPLING_RATE} Hz + their MIDI, "
        f"{torch.get_num_threads()} threads, medians of {args.repeats} round(s) after a warm-up"
    )

    # (1) + (2): the bare encoders on prepared tensors vs the pipeline on the files
    prepared = processor(audio=clip["audio"], midi=clip["midi"])

    def bare() -> None:
        model.get_audio_features(prepared["input_values"])
        model.get_midi_features(prepared["midi_input_ids"], prepared["midi_attention_mask"])

    def bare_under(context: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            with context():
                bare()

        return run

    bare_under(torch.inference_mode)(), classify(clip)  # warm-up: allocator, thread pools, file caches
    clock = StageClock(classify)
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeats):
        times["bare"].append(timed(bare_under(torch.inference_mode)))
        with clock.clocking():
            times["pipeline"].append(timed(lambda: classify(clip)))
        times["bare_no_grad"].append(timed(bare_under(torch.no_grad)))
    bare_time, pipeline_time, no_grad_time = (
        statistics.median(times[key]) for key in ("bare", "pipeline", "bare_no_grad")
    )
    print(f"{'(1) bare encoders, torch.inference_mode':<46}{bare_time:9.3f} s")
    print(f"{'    bare encoders, torch.no_grad':<46}{no_grad_time:9.3f} s")
    print(f"{'(2) pipeline call on the files':<46}{pipeline_time:9.3f} s")
    print(
        f"    overhead (pipeline - bare) / bare:        {(pipeline_time - bare_time) / bare_time:9.2%}  (target <= 10 %)"
    )
    print(f"    inside the pipeline calls (summed over {args.repeats}):")
    print_split(clock.split(sum(times["pipeline"])), sum(times["pipeline"]))
    print(
        f"    encoders inside the pipeline: grad enabled {clock.context['grad']}, "
        f"inference mode {clock.context['inference']}"
    )

    # (3): throughput, batch_size 1 vs 4
    real_tokens = [int(processor(midi=c["midi"])["midi_attention_mask"].sum()) for c in clips]
    padded_tokens = sum(
        max(real_tokens[i : i + 4]) * len(real_tokens[i : i + 4]) for i in range(0, len(clips), 4)
    )
    print(
        f"(3) MIDI tokens of the {len(clips)} clips: {real_tokens}; padded in batches of 4: {padded_tokens}"
    )
    batch_times: dict[int, list[float]] = defaultdict(list)
    batch_clocks = {batch_size: StageClock(classify) for batch_size in (1, 4)}
    for _ in range(args.repeats):
        for batch_size, batch_clock in batch_clocks.items():
            with batch_clock.clocking():
                batch_times[batch_size].append(timed(lambda: classify(clips, batch_size=batch_size)))  # noqa: B023
    for batch_size, batch_clock in batch_clocks.items():
        elapsed = statistics.median(batch_times[batch_size])
        print(f"    batch_size={batch_size}: {elapsed:8.2f} s, {len(clips) / elapsed:6.3f} clips/s")
        print_split(batch_clock.split(sum(batch_times[batch_size])), sum(batch_times[batch_size]))


if __name__ == "__main__":
    main()
