"""PoolingVQ's window rule and pooling: speed against a per-window loop, the memory floor, and MERT.

    python benchmarks/bench_pooling.py            # B=8, T=4500 (60 s of MERT frames), D=768, fp32, CPU

Everything is measured in one run, side by side:
  (a) the vectorised window rule + pooling (codes given) vs the plain per-window Python reference
      (`poolingvq.reference`): outputs must be identical; target speed-up >= 15x;
  (b) the same vs one copy of the input features (`X.clone()`), the memory floor: target <= 1.5x;
  (c) the whole quantizer (cosine assignment + rule + pooling + VQ loss) as a share of one forward pass of a
      MERT-95M-size encoder (random weights) on the same audio: target < 1 %.
Codes come from a Markov chain that keeps a code for a few frames, as real audio does, so all three rules occur.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from poolingvq.configuration_poolingvq import PoolingVQConfig
from poolingvq.quantization_poolingvq import (
    POOLING_RULES,
    PoolingVQQuantizer,
    num_windows,
    pool_windows,
    window_frame_indices,
    window_rules_and_weights,
)
from poolingvq.reference import reference_window_pooling


def timed(function: Callable[[], object], repeats: int) -> float:
    """Median wall time in seconds over `repeats` runs, after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def markov_codes(
    batch: int, frames: int, codebook: int, stay: float, generator: torch.Generator
) -> torch.Tensor:
    """`[B, T]` codes that keep their value with probability `stay` at each frame (runs of ~1/(1-stay))."""
    change = torch.rand(batch, frames, generator=generator) > stay
    change[:, 0] = True
    fresh = torch.randint(codebook, (batch, frames), generator=generator)
    # each frame takes the code drawn at the last change point: a cumulative max of change positions
    position = torch.where(change, torch.arange(frames), torch.zeros(1, dtype=torch.long)).cummax(1).values
    return fresh.gather(1, position)


def rule_and_pool(
    features: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor, fused: bool = False
) -> tuple:
    """The vectorised path from given codes: windows, eq. 3, pooling (what the loop reference does)."""
    lengths = mask.sum(-1)
    windows = int(num_windows(lengths, 5, 3).max())
    index = window_frame_indices(windows, 5, 3, features.device)
    in_range = index < features.shape[1]
    index = index.clamp(max=features.shape[1] - 1)
    item_window = torch.arange(windows) < num_windows(lengths, 5, 3)[:, None]
    rules, weights = window_rules_and_weights(
        codes[:, index], mask[:, index] & in_range & item_window[..., None]
    )
    return pool_windows(features, lengths, rules, weights, 5, 3, fused=fused), rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=4500)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--codebook", type=int, default=64)
    parser.add_argument("--stay", type=float, default=0.75, help="probability that a frame keeps its code")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--mert-batch", type=int, default=None, help="items for the MERT pass (default: --batch)"
    )
    parser.add_argument("--skip-mert", action="store_true")
    parser.add_argument("--skip-fused", action="store_true", help="do not time the torch.compile'd kernel")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; use 1 on a shared, busy machine)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    B, T, D = args.batch, args.frames, args.dim
    features = torch.randn(B, T, D, generator=generator)
    codes = markov_codes(B, T, args.codebook, args.stay, generator)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[-1, T - T // 7 :] = False  # one padded item, so masking is on the measured path
    codes = codes.masked_fill(~mask, -1)
    print(f"features [B={B}, T={T}, D={D}] fp32, {torch.get_num_threads()} threads")

    with torch.no_grad():
        pooled, rules = rule_and_pool(features, codes, mask)
        start = time.perf_counter()
        ref_pooled, ref_rules = reference_window_pooling(features, mask, codes)
        loop_time = time.perf_counter() - start
        identical_rules = torch.equal(rules, ref_rules)
        max_error = float((pooled - ref_pooled).abs().max())
        shares = {
            name: float((rules == i).sum() / (rules >= 0).sum()) for i, name in enumerate(POOLING_RULES)
        }
        vector_time = timed(lambda: rule_and_pool(features, codes, mask), args.repeats)
        clone_time = timed(lambda: features.clone(), args.repeats)
        fused_time = None
        if not args.skip_fused:
            fused_pooled, _ = rule_and_pool(features, codes, mask, fused=True)  # compiles once
            max_error = max(max_error, float((fused_pooled - ref_pooled).abs().max()))
            fused_time = timed(lambda: rule_and_pool(features, codes, mask, fused=True), args.repeats)

        quantizer = PoolingVQQuantizer(D, args.codebook)
        quantizer_time = timed(lambda: quantizer(features, mask), args.repeats)

    print(f"rules: {', '.join(f'{k} {v:.0%}' for k, v in shares.items())}; {int((rules >= 0).sum())} windows")
    print(f"outputs identical to the loop: rules {identical_rules}, pooled max |diff| {max_error:.2e}")
    print(f"{'window rule + pooling (vectorised)':<44}{vector_time * 1e3:10.1f} ms")
    print(f"{'window rule + pooling (per-window loop)':<44}{loop_time * 1e3:10.1f} ms")
    if fused_time is not None:
        print(f"{'window rule + pooling (fused, torch.compile)':<44}{fused_time * 1e3:10.1f} ms")
    print(f"{'X.clone() (memory floor)':<44}{clone_time * 1e3:10.1f} ms")
    print(f"{'whole quantizer (assign + pool + VQ loss)':<44}{quantizer_time * 1e3:10.1f} ms")
    print(f"(a) speed-up over the loop:        {loop_time / vector_time:8.1f}x   (target >= 15x)")
    print(f"(b) time / X.clone(), eager:       {vector_time / clone_time:8.2f}x   (target <= 1.5x)")
    if fused_time is not None:
        print(f"    time / X.clone(), fused:       {fused_time / clone_time:8.2f}x")

    if not args.skip_mert:
        from transformers import HubertModel

        mert_batch = args.mert_batch or B
        config = PoolingVQConfig.from_preset("paper").audio_config
        mert = HubertModel(config).eval()
        samples = T * 320  # 320 samples per frame at 24 kHz
        audio = torch.randn(mert_batch, samples, generator=generator)
        with torch.no_grad():
            start = time.perf_counter()
            mert(audio)
            mert_time = time.perf_counter() - start
            quantizer_on_same = timed(
                lambda: quantizer(features[:mert_batch], mask[:mert_batch]), args.repeats
            )
        print(f"{f'MERT-95M forward, {mert_batch} x {samples / 24000:.0f} s':<44}{mert_time * 1e3:10.1f} ms")
        print(f"(c) quantizer / MERT forward:      {quantizer_on_same / mert_time:8.2%}   (target < 1 %)")

    if not identical_rules or max_error > 1e-5:
        raise SystemExit("the vectorised pooling disagrees with the per-window reference")


if __name__ == "__main__":
    main()
