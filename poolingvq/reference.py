"""Slow, obviously-correct loop versions of the vectorised kernels, for tests and benchmarks only.

They follow the paper's description word for word (one window at a time), so the vectorised code in
`quantization_poolingvq.py` is checked against an independent reading of eq. 3 rather than against itself.
"""

from __future__ import annotations

import torch

from .quantization_poolingvq import RULE_AVG, RULE_MAX, RULE_WEIGHTED


def reference_window_pooling(
    features: torch.Tensor,
    mask: torch.Tensor,
    codes: torch.Tensor,
    *,
    window_size: int = 5,
    window_stride: int = 3,
    avg_max_distinct_codes: int = 1,
    weighted_max_distinct_codes: int = 3,
    weighted_pooling: str = "code_frequency",
    force_rule: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool `features` [B, T, D] window by window. Returns `(pooled [B, W, D], rules [B, W])` shaped and padded
    like `PoolingVQQuantizer`'s output (zeros and -1 on padded windows)."""
    batch, _, dim = features.shape
    per_item: list[tuple[list[torch.Tensor], list[int]]] = []
    for b in range(batch):
        length = int(mask[b].sum())
        pooled_b: list[torch.Tensor] = []
        rules_b: list[int] = []
        start = 0
        while length > 0:
            frames = features[b, start : min(start + window_size, length)]
            frame_codes = [int(c) for c in codes[b, start : min(start + window_size, length)]]
            distinct = len(set(frame_codes))
            if distinct <= avg_max_distinct_codes:
                rule = RULE_AVG
            elif distinct <= weighted_max_distinct_codes:
                rule = RULE_WEIGHTED
            else:
                rule = RULE_MAX
            if force_rule is not None:
                rule = force_rule
            if rule == RULE_AVG:
                pooled_b.append(frames.mean(0))
            elif rule == RULE_MAX:
                pooled_b.append(frames.max(0).values)
            else:
                if weighted_pooling == "code_frequency":
                    weights = torch.tensor([float(frame_codes.count(c)) for c in frame_codes])
                else:  # triangular: 1, 2, 3, 2, 1 over the full window's positions
                    weights = torch.tensor(
                        [float(min(i + 1, window_size - i)) for i in range(len(frame_codes))]
                    )
                pooled_b.append((weights[:, None] * frames).sum(0) / weights.sum())
            rules_b.append(rule)
            if start + window_size >= length:
                break
            start += window_stride
        per_item.append((pooled_b, rules_b))
    windows = max((len(r) for _, r in per_item), default=0)
    pooled = features.new_zeros(batch, windows, dim)
    rules = torch.full((batch, windows), -1, dtype=torch.long)
    for b, (pooled_b, rules_b) in enumerate(per_item):
        if pooled_b:
            pooled[b, : len(pooled_b)] = torch.stack(pooled_b)
            rules[b, : len(rules_b)] = torch.tensor(rules_b)
    return pooled, rules
