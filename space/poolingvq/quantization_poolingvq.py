"""The PoolingVQ quantizer: a codebook that decides *how* to pool, not *what* to keep.

Remote code: imports only torch, transformers and its siblings.

PoolingVQ reads a sequence of continuous audio frames `X` [B, T, D] and shrinks it to about a third:

1. **Codes (eq. 1-2).** Every frame gets the index of the code vector of highest cosine similarity.
2. **Window rule (eq. 3).** A window of `window_size` frames slides with `window_stride` over the codes. The
   number of distinct codes in a window measures how much the music changes inside it:
   - 1 distinct code (`<= avg_max_distinct_codes`): a steady state, *average* pooling;
   - 2-3 (`<= weighted_max_distinct_codes`): a state with transitions, *weighted* average;
   - more: the window is all change, *max* pooling keeps the salient events.
   The rule is applied to the continuous features `X`, not to the code vectors: codes only steer the pooling.
3. **VQ loss (eq. 4).** `||sg(X) - P_c||^2 + commitment_weight * ||X - sg(P_c)||^2`, averaged over real frames and
   feature dimensions, keeps the codebook on the data (the argmax itself passes no gradient).

The codebook starts from cosine k-means on frames of half the training set ([`PoolingVQQuantizer.init_codebook`]).

Everything is vectorised over batch, frames and windows. The only Python loops run over the `window_size`
offsets inside a window (5) and over k-means iterations, never over frames, windows or batch items.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

#: Names of the pooling rules, indexed by the values of `window_rules` (-1 marks padded windows).
POOLING_RULES: tuple[str, ...] = ("avg", "weighted", "max")
RULE_AVG, RULE_WEIGHTED, RULE_MAX = 0, 1, 2


@dataclass
class PoolingVQOutput(ModelOutput):
    """What the quantizer returns.

    Args:
        pooled: `[B, W, D]` pooled continuous features; padded windows are zeros.
        pooled_mask: `[B, W]` bool, True on real windows.
        pooled_lengths: `[B]` number of real windows per item.
        codes: `[B, T]` code index of every frame, -1 on padded frames (None when `pooling="none"`).
        window_rules: `[B, W]` rule of every window (0 avg, 1 weighted, 2 max; see `POOLING_RULES`), -1 on
            padded windows (None when `pooling="none"`).
        vq_loss: scalar VQ loss (eq. 4); 0 when `pooling="none"`.
    """

    pooled: torch.FloatTensor | None = None
    pooled_mask: torch.BoolTensor | None = None
    pooled_lengths: torch.LongTensor | None = None
    codes: torch.LongTensor | None = None
    window_rules: torch.LongTensor | None = None
    vq_loss: torch.FloatTensor | None = None


def num_windows(lengths: torch.Tensor, window_size: int, window_stride: int) -> torch.Tensor:
    """Windows needed to cover `lengths` frames: one window for up to `window_size` frames, then one more per
    `window_stride` frames (the last one may be partial). `[B] -> [B]`; 0 frames give 0 windows."""
    extra = torch.clamp(lengths - window_size, min=0)
    count = torch.div(extra + window_stride - 1, window_stride, rounding_mode="floor") + 1
    return torch.where(lengths > 0, count, torch.zeros_like(count))


def window_view(x: torch.Tensor, num: int, window_size: int, window_stride: int) -> torch.Tensor:
    """The first `num` full windows of `x` [B, T, ...] as a strided view [B, num, window_size, ...] (no copy)."""
    strides = (x.stride(0), window_stride * x.stride(1), *x.stride()[1:])
    return x.as_strided((x.shape[0], num, window_size, *x.shape[2:]), strides, x.storage_offset())


def window_frame_indices(
    num: int, window_size: int, window_stride: int, device: torch.device
) -> torch.Tensor:
    """Frame index of every window position: `[num, window_size]`."""
    starts = torch.arange(num, device=device) * window_stride
    return starts[:, None] + torch.arange(window_size, device=device)


def window_rules_and_weights(
    window_codes: torch.Tensor,
    window_valid: torch.Tensor,
    *,
    avg_max_distinct_codes: int = 1,
    weighted_max_distinct_codes: int = 3,
    weighted_pooling: str = "code_frequency",
    force_rule: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: the pooling rule of every window, and the frame weights of the (weighted) averages.

    Args:
        window_codes: `[B, W, K]` code of each frame of each window (K = window size).
        window_valid: `[B, W, K]` bool, False on padded frames.
        force_rule: pool every real window with this rule (the "only average" / "only max" ablations).

    Returns:
        rules: `[B, W]` long, 0 avg / 1 weighted / 2 max, -1 for windows without a real frame.
        weights: `[B, W, K]` float, summing to 1 over a window's real frames for avg and weighted windows,
            0 for max and padded windows (their pooling does not use weights).
    """
    size = window_codes.shape[-1]
    # frequency[b, w, i]: how many real frames of the window share frame i's code (0 for a padded frame, whose
    # code is set apart). K is 5, so this K x K comparison is cheaper than any sort.
    codes = window_codes.to(torch.int32).masked_fill(~window_valid, -1)
    same = (codes[..., :, None] == codes[..., None, :]) & window_valid[..., None, :]
    frequency = same.sum(-1, dtype=torch.int32)
    valid = window_valid.to(torch.float32)
    # each code that occurs n times adds n * (1 / n): the sum counts the distinct codes
    distinct = torch.round((valid / frequency.clamp_min(1)).sum(-1)).to(torch.int32)

    rules = torch.full_like(distinct, RULE_MAX, dtype=torch.long)
    rules = torch.where(distinct <= weighted_max_distinct_codes, RULE_WEIGHTED, rules)
    rules = torch.where(distinct <= avg_max_distinct_codes, RULE_AVG, rules)
    if force_rule is not None:
        rules = torch.full_like(rules, force_rule)
    rules = torch.where(distinct > 0, rules, -1)

    if weighted_pooling == "code_frequency":
        # A frame counts as often as its code occurs in the window: the stable state outweighs transitions.
        frame_weight = frequency.to(torch.float32)
    elif weighted_pooling == "triangular":
        position = torch.arange(size, device=window_codes.device)
        frame_weight = torch.minimum(position + 1, size - position).to(torch.float32) * valid
    else:
        raise ValueError(f"unknown weighted_pooling {weighted_pooling!r}")
    averaged = (rules == RULE_AVG) | (rules == RULE_WEIGHTED)  # max and padded windows take no weights
    raw = torch.where((rules == RULE_WEIGHTED)[..., None], frame_weight, valid) * averaged[..., None]
    weights = raw / raw.sum(-1, keepdim=True).clamp_min(1e-12)
    return rules, weights


def pool_full_windows(
    view: torch.Tensor, weights: torch.Tensor, is_max: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Eager pooling of windows that lie wholly inside the tensor: `[B, W, K, D]` -> `[B, W, D]`.

    `view` is a strided view of the features (no copy), `weights` `[B, W, K]`, `is_max` `[B, W]`. The weighted
    sums take K strided passes accumulated in place; maxima are taken only for the windows that ask for them
    (with real audio most windows are averages). `out`, when given, receives the result without a copy (not
    for tensors that need gradients: `out=` does not support autograd).
    """
    out = torch.mul(view[:, :, 0], weights[..., 0, None], out=out)
    for k in range(1, view.shape[2]):  # the K = 5 positions of a window, not frames or windows
        out.addcmul_(view[:, :, k], weights[..., k, None])
    batch_index, window_index = is_max.nonzero(as_tuple=True)
    if batch_index.numel():
        out[batch_index, window_index] = view[batch_index, window_index].amax(1)
    return out


def _fused_expression(view: torch.Tensor, weights: torch.Tensor, is_max: torch.Tensor) -> torch.Tensor:
    # One expression that torch.compile turns into a single pass over the windows; in eager mode it would
    # materialise [B, W, K, D] and be slow, which is why `pool_full_windows` exists.
    return torch.where(is_max[..., None], view.amax(2), (view * weights[..., None]).sum(2))


@functools.lru_cache(maxsize=1)
def fused_pooling_kernel():
    """`_fused_expression` compiled by torch.compile (inductor: C++/OpenMP on CPU, Triton on GPU)."""
    return torch.compile(_fused_expression, dynamic=True)


def pool_windows(
    features: torch.Tensor,
    lengths: torch.Tensor,
    rules: torch.Tensor,
    weights: torch.Tensor,
    window_size: int,
    window_stride: int,
    fused: bool = False,
) -> torch.Tensor:
    """Apply each window's rule to the continuous features.

    Args:
        features: `[B, T, D]`; frames at or after `lengths[b]` are padding and never read into a result.
        lengths: `[B]` real frames per item.
        rules, weights: from [`window_rules_and_weights`], `[B, W]` and `[B, W, K]`.
        fused: compute the windows in one compiled pass (see `PoolingVQConfig.fused_pooling`).

    Returns:
        `[B, W, D]` pooled features, zeros on padded windows.

    The features are never copied or padded: windows that lie wholly inside the tensor are read through a
    strided view. Only the last real window of each item can contain padding, so those B windows are recomputed
    from a small gather whose padded positions repeat a real frame of the same window (which changes neither a
    max nor, with weight 0, a weighted sum).
    """
    batch, total, dim = features.shape
    windows = rules.shape[1]
    device = features.device
    full = 0 if total < window_size else (total - window_size) // window_stride + 1
    full = min(full, windows)

    pooled = features.new_empty(batch, windows, dim)
    pooled[:, full:].zero_()
    if full > 0:
        view = window_view(features, full, window_size, window_stride)  # [B, full, K, D], no copy
        full_weights = weights[:, :full].to(features.dtype)
        is_max = rules[:, :full] == RULE_MAX
        if fused:
            pooled[:, :full] = fused_pooling_kernel()(view, full_weights, is_max)
        elif torch.is_grad_enabled() and features.requires_grad:
            pooled[:, :full] = pool_full_windows(view, full_weights, is_max)
        else:
            pool_full_windows(view, full_weights, is_max, out=pooled[:, :full])

    # The last real window of every item, which may hold padded frames (or run past the tensor's end).
    last = (num_windows(lengths, window_size, window_stride) - 1).clamp_min(0)  # [B]
    frame = last[:, None] * window_stride + torch.arange(window_size, device=device)  # [B, K]
    real = frame < lengths[:, None]
    frame = torch.where(real, frame, last[:, None] * window_stride).clamp(max=max(total - 1, 0))
    gathered = features.gather(1, frame[..., None].expand(-1, -1, dim))  # [B, K, D]
    last_weights = weights.gather(1, last[:, None, None].expand(-1, 1, window_size))[:, 0].to(features.dtype)
    last_rule = rules.gather(1, last[:, None])[:, 0]
    last_pooled = torch.where(
        (last_rule == RULE_MAX)[:, None],
        gathered.amax(1),
        torch.einsum("bk,bkd->bd", last_weights, gathered),
    )
    last_pooled = last_pooled * (last_rule >= 0)[:, None]
    pooled[torch.arange(batch, device=device), last] = last_pooled
    return pooled


def normalized_codebook(codebook: torch.Tensor) -> torch.Tensor:
    return F.normalize(codebook, dim=-1, eps=1e-12)


def sample_frames(
    frames: torch.Tensor | Iterable[torch.Tensor], max_frames: int, generator: torch.Generator
) -> torch.Tensor:
    """A uniform random sample of at most `max_frames` rows from a tensor [N, D] or a stream of [n_i, D] chunks.

    Priority sampling: every frame draws a uniform key and the `max_frames` smallest keys are kept, so a stream
    of any length is sampled exactly uniformly with memory bounded by `max_frames + chunk`.
    """
    chunks = [frames] if isinstance(frames, torch.Tensor) else frames
    kept: torch.Tensor | None = None
    kept_keys: torch.Tensor | None = None
    for chunk in chunks:
        chunk = chunk.detach().reshape(-1, chunk.shape[-1]).float().cpu()
        keys = torch.rand(chunk.shape[0], generator=generator)
        if kept is not None:
            chunk, keys = torch.cat([kept, chunk]), torch.cat([kept_keys, keys])
        if chunk.shape[0] > max_frames:
            order = keys.topk(max_frames, largest=False).indices
            chunk, keys = chunk[order], keys[order]
        kept, kept_keys = chunk, keys
    if kept is None or kept.shape[0] == 0:
        raise ValueError("k-means initialisation got no frames")
    return kept


def cosine_kmeans(
    frames: torch.Tensor, num_codes: int, num_iters: int = 20, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cosine k-means: frames go to the centroid of highest cosine similarity (as in eq. 1-2), and each centroid
    is the mean of its frames in the raw feature space (so its direction is the spherical-k-means centroid and
    its norm sits on the data, where the Euclidean VQ loss wants it).

    Args:
        frames: `[N, D]` float.
    Returns:
        `[num_codes, D]` codebook.

    Edge cases: duplicate frames are seeded once (k-means++ on distinct directions); with fewer distinct frames
    than codes, the extra codes point in random directions at the data's mean norm (they start unused); a
    cluster that empties during the iterations is re-seeded on the frame that its centroid explains worst.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    frames = frames.float()
    directions = F.normalize(frames, dim=-1, eps=1e-12)
    distinct = torch.unique(directions, dim=0)  # sorted, so the seeding does not depend on row order
    count = min(num_codes, distinct.shape[0])

    # k-means++ seeding on cosine distance (1 - cos), over distinct directions. A loop over codes, not frames.
    first = torch.randint(distinct.shape[0], (1,), generator=generator)
    seeds = [distinct[first]]
    closest = 1 - distinct @ seeds[0].T  # [M, 1]
    for _ in range(1, count):
        probability = closest[:, 0].clamp_min(0)
        if probability.sum() <= 0:
            break
        pick = torch.multinomial(probability, 1, generator=generator)
        seeds.append(distinct[pick])
        closest = torch.minimum(closest, 1 - distinct @ seeds[-1].T)
    centroids = torch.cat(seeds)
    mean_norm = frames.norm(dim=-1).mean()
    if centroids.shape[0] < num_codes:
        spare = torch.randn(num_codes - centroids.shape[0], frames.shape[1], generator=generator)
        centroids = torch.cat([centroids, F.normalize(spare, dim=-1)])
    centroids = centroids * mean_norm
    used = min(count, len(seeds))

    for _ in range(num_iters):
        similarity = directions @ normalized_codebook(centroids[:used]).T  # [N, used]
        best, assignment = similarity.max(dim=1)
        sizes = torch.bincount(assignment, minlength=used)
        sums = torch.zeros(used, frames.shape[1]).index_add_(0, assignment, frames)
        updated = sums / sizes.clamp_min(1)[:, None]
        empty = (sizes == 0).nonzero()[:, 0]
        if empty.numel():
            worst = best.topk(min(empty.numel(), best.numel()), largest=False).indices
            updated[empty[: worst.numel()]] = frames[worst]
        converged = torch.allclose(updated, centroids[:used])
        centroids[:used] = updated
        if converged:
            break
    return centroids


class PoolingVQQuantizer(nn.Module):
    """The PoolingVQ module: codebook, cosine codes, window rule, pooling and VQ loss.

    Args:
        dim: feature width D.
        codebook_size: P.
        window_size, window_stride: the sliding window (5, 3).
        avg_max_distinct_codes, weighted_max_distinct_codes: the thresholds of eq. 3 (1, 3).
        weighted_pooling: `"code_frequency"` or `"triangular"` (see `PoolingVQConfig`).
        commitment_weight: weight of `||X - sg(P_c)||^2` in the VQ loss.
        pooling: `"poolingvq"` (rules from codes), `"avg"` / `"max"` (one rule for every window), `"none"`.
        fused_pooling: pool in one pass compiled by `torch.compile` instead of the eager kernels.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        window_size: int = 5,
        window_stride: int = 3,
        avg_max_distinct_codes: int = 1,
        weighted_max_distinct_codes: int = 3,
        weighted_pooling: str = "code_frequency",
        commitment_weight: float = 1.0,
        pooling: str = "poolingvq",
        fused_pooling: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.window_size = window_size
        self.window_stride = window_stride
        self.avg_max_distinct_codes = avg_max_distinct_codes
        self.weighted_max_distinct_codes = weighted_max_distinct_codes
        self.weighted_pooling = weighted_pooling
        self.commitment_weight = commitment_weight
        self.pooling = pooling
        self.fused_pooling = fused_pooling
        self.codebook = nn.Parameter(torch.randn(codebook_size, dim))
        # Whether `init_codebook` has run; saved with the weights so a loaded model never re-initialises.
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def assign_codes(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 1-2: index of the code of highest cosine similarity. `[B, T, D] -> [B, T]`, -1 where mask is False.

        The frame's own norm does not change which code wins, so only the codebook is normalised.
        """
        similarity = features.detach().to(self.codebook.dtype) @ normalized_codebook(self.codebook.detach()).T
        codes = similarity.argmax(dim=-1)
        return codes if mask is None else codes.masked_fill(~mask, -1)

    def vq_loss(self, features: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 4 with squared distances, averaged over real frames and dimensions.

        `||sg(X) - P_c||^2` moves the chosen code vectors towards the frames; `||X - sg(P_c)||^2` (the commitment
        term) moves trainable features towards their codes. With frozen encoders the features carry no gradient,
        the two terms are equal in value and only the first is computed.

        The codebook term is summed per code from sufficient statistics, `sum ||x||^2 - 2 P_p . S_p + n_p ||P_p||^2`
        with `S_p` the sum and `n_p` the count of the frames of code p: two passes over X, and no [B, T, D]
        copy of the chosen code vectors.
        """
        real = mask.reshape(-1)
        count = real.sum().clamp_min(1) * self.dim
        flat = features.detach().reshape(-1, self.dim).to(self.codebook.dtype)
        # padded frames go to an extra row that is dropped
        slot = torch.where(real, codes.reshape(-1), self.codebook_size)
        sums = flat.new_zeros(self.codebook_size + 1, self.dim).index_add_(0, slot, flat)[:-1]
        sizes = torch.bincount(slot, minlength=self.codebook_size + 1)[:-1].to(flat.dtype)
        squared_norms = (torch.linalg.vector_norm(flat, dim=-1).pow(2) * real).sum()
        codebook_term = (
            squared_norms - 2 * (self.codebook * sums).sum() + (sizes * self.codebook.pow(2).sum(-1)).sum()
        ).clamp_min(0) / count
        if torch.is_grad_enabled() and features.requires_grad:
            chosen = self.codebook.detach()[codes.clamp_min(0)]
            commitment_term = ((features - chosen).pow(2).sum(-1) * mask).sum() / count
        else:
            commitment_term = codebook_term.detach()
        return codebook_term + self.commitment_weight * commitment_term

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> PoolingVQOutput:
        """Quantize and pool.

        Args:
            features: `[B, T, D]` continuous frames (e.g. MERT features at 75 frames/s).
            mask: `[B, T]` bool, True on real frames; real frames must come first (right padding).
        """
        batch, total, _ = features.shape
        if mask is None:
            mask = torch.ones(batch, total, dtype=torch.bool, device=features.device)
        mask = mask.bool()
        lengths = mask.sum(-1)
        if self.pooling == "none":
            return PoolingVQOutput(
                pooled=features * mask[..., None],
                pooled_mask=mask,
                pooled_lengths=lengths,
                vq_loss=features.new_zeros(()),
            )

        codes = self.assign_codes(features, mask)
        windows_per_item = num_windows(lengths, self.window_size, self.window_stride)  # [B]
        windows = int(windows_per_item.max().item()) if batch else 0
        frame_index = window_frame_indices(windows, self.window_size, self.window_stride, features.device)
        in_range = frame_index < total
        frame_index = frame_index.clamp(max=max(total - 1, 0))
        window_codes = codes[:, frame_index]  # [B, W, K]
        # A frame counts in a window when it is real and the window is one of the item's own windows (a window
        # that starts inside the item but after its last needed window would pool frames twice).
        item_window = torch.arange(windows, device=features.device) < windows_per_item[:, None]  # [B, W]
        window_valid = mask[:, frame_index] & in_range & item_window[..., None]
        force = {"avg": RULE_AVG, "max": RULE_MAX}.get(self.pooling)
        rules, weights = window_rules_and_weights(
            window_codes,
            window_valid,
            avg_max_distinct_codes=self.avg_max_distinct_codes,
            weighted_max_distinct_codes=self.weighted_max_distinct_codes,
            weighted_pooling=self.weighted_pooling,
            force_rule=force,
        )
        pooled = pool_windows(
            features, lengths, rules, weights, self.window_size, self.window_stride, fused=self.fused_pooling
        )
        pooled_mask = rules >= 0
        return PoolingVQOutput(
            pooled=pooled,
            pooled_mask=pooled_mask,
            pooled_lengths=pooled_mask.sum(-1),
            codes=codes,
            window_rules=rules,
            vq_loss=self.vq_loss(features, codes, mask),
        )

    @torch.no_grad()
    def init_codebook(
        self,
        frames: torch.Tensor | Iterable[torch.Tensor],
        num_iters: int = 20,
        max_frames: int = 200_000,
        seed: int = 0,
    ) -> None:
        """Initialise the codebook by cosine k-means (the paper: on cached features of half the training set).

        Args:
            frames: `[N, D]` frames, or an iterable of `[n_i, D]` / `[n_i, T, D]` chunks (e.g. one clip at a
                time from a feature cache): a uniform sample of at most `max_frames` is kept, so memory stays
                bounded whatever the stream's length.
            num_iters: Lloyd iterations.
            seed: seeds the sampling and the k-means++ start.
        """
        generator = torch.Generator().manual_seed(seed)
        sample = sample_frames(frames, max_frames, generator)
        if sample.shape[-1] != self.dim:
            raise ValueError(f"frames have {sample.shape[-1]} features, the codebook {self.dim}")
        centroids = cosine_kmeans(sample, self.codebook_size, num_iters, generator)
        self.codebook.copy_(centroids.to(self.codebook))
        self.initialized.fill_(True)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, window={self.window_size}/{self.window_stride}, "
            f"pooling={self.pooling}, weighted_pooling={self.weighted_pooling}"
        )


__all__ = [
    "POOLING_RULES",
    "PoolingVQOutput",
    "PoolingVQQuantizer",
    "cosine_kmeans",
    "num_windows",
    "pool_windows",
    "window_rules_and_weights",
]
