"""Training pipeline benchmarks.

Part 1, feature extraction: the throughput (clips/s) of `poolingvq.features.extract_features` against the bare
encoder forward passes on the same clips. Target: extraction >= 0.9x the bare passes.

    python benchmarks/bench_training.py                 # 16 synthesized 10-s clips, paper-size encoders
    python benchmarks/bench_training.py --clips 4 --seconds 5

The model is the paper's architecture (MERT-95M-size audio encoder, MIDI-BERT-size MIDI encoder) with random
weights: speed does not depend on the weights. Each clip is a random piano MIDI a little longer than
`--seconds`, so every synthesized clip is cropped to the same length and a batch shares one MERT pass, as 60-s
crops do.

- bare: the encoders alone (`get_audio_features` + `get_midi_features`) on inputs prepared beforehand
  (synthesized, normalised, tokenized; MIDI rows cut to the batch's longest real row, as extraction cuts
  them), in the same batches;
- extraction: `extract_features` on an empty cache, everything included: the weight fingerprint, the file
  hashes, synthesis, tokenization, the same encoder passes, the fp16 conversion and the atomic writes;
- resume: `extract_features` again on the full cache (what a restarted run pays before training).
One batch runs first, untimed, to warm the kernels up; with `--repeats` the bare and extraction runs alternate and
the best time of each is kept.

Part 2, one training epoch on cached features of EMOPIA's size: `--epoch-clips` (767, the paper split's training
set) clips of `--epoch-seconds` (30 s, about an EMOPIA clip) of 768-d audio frames and up to 512 MIDI tokens, in
memory with the cache's fp16 dtype, through `poolingvq.training.train_one_epoch` with the full-size quantizer,
fusion and head and the paper's optimizer. Reports seconds per epoch and clips/s.

    python benchmarks/bench_training.py --part epoch --epoch-clips 64     # a quick look
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from symusic import Note, Score, Tempo, Track

from poolingvq.configuration_poolingvq import PoolingVQConfig
from poolingvq.feature_extraction_poolingvq import PoolingVQFeatureExtractor
from poolingvq.features import FeatureCache, extract_features
from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion
from poolingvq.synthesis_poolingvq import synthesize_midi
from poolingvq.tokenization_poolingvq import CPMidiTokenizer

TARGET_RATIO = 0.9


def write_random_piano_midi(path: Path, seconds: float, generator: np.random.Generator) -> None:
    """About three notes a beat at 120 qpm, pitches 36..95, lasting a sixteenth to a half note."""
    score = Score(480)
    score.tempos.append(Tempo(time=0, qpm=120))
    track = Track(name="piano", program=0)
    num_notes = int(seconds * 2 * 3)  # 2 beats a second
    onsets = np.sort(generator.integers(0, int(seconds * 2 * 480), num_notes))
    durations = generator.choice([120, 240, 480, 960], num_notes)
    pitches = generator.integers(36, 96, num_notes)
    velocities = generator.integers(50, 110, num_notes)
    for onset, duration, pitch, velocity in zip(onsets, durations, pitches, velocities, strict=True):
        track.notes.append(
            Note(time=int(onset), duration=int(duration), pitch=int(pitch), velocity=int(velocity))
        )
    score.tracks.append(track)
    score.dump_midi(path)


def prepared_batches(
    clips: list[dict], extractor: PoolingVQFeatureExtractor, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(input_values [B, S], attention_mask [B, S], tokens [B, L, 4], token mask [B, L]) per batch, L cut."""
    tokenizer = CPMidiTokenizer()
    batches = []
    for start in range(0, len(clips), batch_size):
        chunk = clips[start : start + batch_size]
        waveforms = [synthesize_midi(clip["midi_path"], max_seconds=extractor.max_seconds) for clip in chunk]
        inputs = extractor(waveforms, sampling_rate=extractor.sampling_rate, return_tensors="pt")
        tokens = torch.from_numpy(
            np.concatenate([tokenizer(clip["midi_path"], max_rows=1) for clip in chunk])
        )
        mask = tokens[..., 0] != 2
        longest = int(mask.sum(-1).max())
        batches.append(
            (inputs["input_values"], inputs["attention_mask"], tokens[:, :longest], mask[:, :longest])
        )
    return batches


def clock() -> np.ndarray:
    """[wall seconds, CPU seconds of all the threads of this process]."""
    return np.array([time.perf_counter(), time.process_time()])


def run_bare(model: PoolingVQForMusicEmotion, batches: list) -> None:
    device = model.device
    with torch.inference_mode():
        for input_values, attention_mask, tokens, token_mask in batches:
            model.get_audio_features(input_values.to(device), attention_mask.to(device))
            model.get_midi_features(tokens.to(device), token_mask.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()


class RandomCachedFeatures(torch.utils.data.Dataset):
    """Items shaped like `CachedFeatureDataset`'s (fp16 features, a label), drawn from a seeded generator."""

    def __init__(self, clips: int, frames: int, dim: int) -> None:
        self.clips, self.frames, self.dim = clips, frames, dim

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(index)
        frames = self.frames - int(torch.randint(0, self.frames // 4, (1,), generator=generator))
        tokens = int(torch.randint(100, 513, (1,), generator=generator))
        return {
            "audio_features": torch.randn(frames, self.dim, generator=generator).half(),
            "midi_features": torch.randn(tokens, self.dim, generator=generator).half(),
            "labels": index % 4,
        }


def bench_training_epoch(args: argparse.Namespace) -> None:
    """Part 2: one epoch of the paper's recipe on cached features of EMOPIA's size, full-size head."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from poolingvq.features import collate_cached_features
    from poolingvq.training import TrainingArguments, make_optimizer, train_one_epoch

    torch.manual_seed(0)
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.device == "cpu")
    model = PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("paper"))
    frames = int(args.epoch_seconds * model.config.audio_frame_rate)
    loader = DataLoader(
        RandomCachedFeatures(args.epoch_clips, frames, model.config.audio_config.hidden_size),
        batch_size=16,
        shuffle=True,
        collate_fn=collate_cached_features,
    )
    optimizer = make_optimizer(model, TrainingArguments())
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    start = time.perf_counter()
    metrics = train_one_epoch(model, loader, optimizer, accelerator)
    seconds = time.perf_counter() - start
    print(
        f"one epoch, {args.epoch_clips} clips of {args.epoch_seconds:g} s ({frames} frames) + <= 512 MIDI tokens, "
        f"full-size head, batch 16, {accelerator.device}, mixed precision {args.mixed_precision}: "
        f"{seconds:.1f} s ({args.epoch_clips / seconds:.1f} clips/s), train loss {metrics['loss']:.3f}, "
        f"compression {metrics.get('compression_ratio', float('nan')):.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("extraction", "epoch", "all"), default="all")
    parser.add_argument("--epoch-clips", type=int, default=767, help="clips in the training epoch (767)")
    parser.add_argument("--epoch-seconds", type=float, default=30.0, help="seconds of audio a clip (30)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--clips", type=int, default=16, help="number of clips (16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio seconds per clip (10)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per encoder pass (4)")
    parser.add_argument("--preset", default="paper", choices=("paper", "tiny"), help="model size (paper)")
    parser.add_argument("--num-workers", type=int, default=0, help="extraction's DataLoader workers (0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternated bare / extraction runs; best kept (1)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part in ("extraction", "all"):
        bench_extraction(args)
    if args.part in ("epoch", "all"):
        bench_training_epoch(args)


def bench_extraction(args: argparse.Namespace) -> None:
    """Part 1: `extract_features` against the bare encoder passes on the same clips."""
    torch.manual_seed(0)
    model = PoolingVQForMusicEmotion(PoolingVQConfig.from_preset(args.preset)).eval().to(args.device)
    extractor = PoolingVQFeatureExtractor(max_seconds=args.seconds)
    with tempfile.TemporaryDirectory(prefix="bench_features_") as folder:
        generator = np.random.default_rng(0)
        clips = []
        for index in range(args.clips):
            path = Path(folder) / f"clip{index:03d}.mid"
            write_random_piano_midi(path, args.seconds + 2.0, generator)
            clips.append({"id": path.stem, "midi_path": str(path)})

        batches = prepared_batches(clips, extractor, args.batch_size)
        run_bare(model, batches[:1])  # warm-up

        # Alternated and repeated: on a shared machine the best of each is the least disturbed measurement.
        bare_times, extraction_times = [], []
        for repeat in range(args.repeats):
            start = clock()
            run_bare(model, batches)
            bare_times.append(tuple(clock() - start))

            cache = FeatureCache(Path(folder) / f"cache{repeat}")
            start = clock()
            result = extract_features(
                model,
                clips,
                cache,
                batch_size=args.batch_size,
                feature_extractor=extractor,
                num_workers=args.num_workers,
            )
            extraction_times.append(tuple(clock() - start))
            if result.failures or len(result.computed) != args.clips:
                raise RuntimeError(f"extraction failed: {result.failures}")
        (bare_seconds, bare_cpu), (extraction_seconds, extraction_cpu) = (
            min(bare_times),
            min(extraction_times),
        )

        start = time.perf_counter()
        resumed = extract_features(
            model, clips, cache, batch_size=args.batch_size, feature_extractor=extractor
        )
        resume_seconds = time.perf_counter() - start
        assert resumed.computed == []
        entry_bytes = sum(cache.path(key).stat().st_size for key in result.keys)

    bare_rate, extraction_rate = args.clips / bare_seconds, args.clips / extraction_seconds
    ratio = extraction_rate / bare_rate
    print(
        f"{args.clips} clips of {args.seconds:g} s, {args.preset} encoders, batch {args.batch_size}, "
        f"{torch.get_num_threads()} torch threads, best of {args.repeats}"
    )
    print(
        f"bare encoder passes : {bare_seconds:7.2f} s  {bare_rate:6.3f} clips/s  (CPU time {bare_cpu:.2f} s)"
    )
    print(
        f"extract_features    : {extraction_seconds:7.2f} s  {extraction_rate:6.3f} clips/s  "
        f"(CPU time {extraction_cpu:.2f} s)"
    )
    print(f"resume (all cached) : {resume_seconds:7.2f} s")
    print(
        f"cache size          : {entry_bytes / 2**20:.1f} MiB "
        f"({entry_bytes / args.clips / 2**10:.0f} KiB a clip)"
    )
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"extraction / bare throughput: {ratio:.3f}x ({verdict} the {TARGET_RATIO}x target)")
    print(
        f"bare / extraction CPU time: {bare_cpu / extraction_cpu:.3f}x (all threads of this process: the "
        "fairer measure when other processes share the cores)"
    )


if __name__ == "__main__":
    main()
