"""The PoolingVQ quantizer, equation by equation, on small hand-worked examples."""

from __future__ import annotations

import pytest
import torch

from poolingvq.quantization_poolingvq import (
    RULE_AVG,
    RULE_MAX,
    RULE_WEIGHTED,
    PoolingVQQuantizer,
    cosine_kmeans,
    num_windows,
    sample_frames,
    window_rules_and_weights,
)
from poolingvq.reference import reference_window_pooling


def basis_quantizer(dim: int = 4, **kwargs) -> PoolingVQQuantizer:
    """A quantizer whose codebook is the standard basis, so frame e_i (at any scale) gets code i."""
    quantizer = PoolingVQQuantizer(dim, dim, **kwargs)
    with torch.no_grad():
        quantizer.codebook.copy_(torch.eye(dim))
    return quantizer


def frames_with_codes(codes: list[int], dim: int = 4) -> torch.Tensor:
    """Frames pointing at the basis vector of each code, with distinct magnitudes so poolings differ."""
    frames = torch.zeros(len(codes), dim)
    for t, code in enumerate(codes):
        frames[t, code] = 1.0 + t  # magnitude 1, 2, 3, ...
        frames[t, (code + 1) % dim] = 0.1 * (t + 1)  # a small off-axis part, still closest to e_code
    return frames


# --- eq. 1-2: cosine codes ----------------------------------------------------------------------------------


def test_codes_follow_cosine_similarity_not_distance():
    quantizer = PoolingVQQuantizer(2, 2)
    with torch.no_grad():
        quantizer.codebook.copy_(torch.tensor([[10.0, 0.0], [0.7, 0.7]]))
    # (1, 1.2) is nearer in Euclidean distance to code 1 and in angle too; (0.1, 0.0) is Euclidean-nearer to
    # code 1 but points exactly at code 0: cosine must pick 0.
    frames = torch.tensor([[[1.0, 1.2], [0.1, 0.0], [5.0, 0.1]]])
    assert quantizer.assign_codes(frames).tolist() == [[1, 0, 0]]


def test_codes_are_scale_invariant_and_masked():
    quantizer = basis_quantizer()
    frames = frames_with_codes([2, 0, 3, 1])[None]
    mask = torch.tensor([[True, True, True, False]])
    assert quantizer.assign_codes(frames, mask).tolist() == [[2, 0, 3, -1]]
    assert quantizer.assign_codes(frames * 1000, mask).tolist() == [[2, 0, 3, -1]]


# --- eq. 3: the window rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "rule", "weights"),
    [
        ([0, 0, 0, 0, 0], RULE_AVG, [1, 1, 1, 1, 1]),
        ([0, 0, 0, 1, 1], RULE_WEIGHTED, [3, 3, 3, 2, 2]),
        ([0, 2, 2, 1, 2], RULE_WEIGHTED, [1, 3, 3, 1, 3]),
        ([0, 1, 2, 3, 3], RULE_MAX, None),
        ([3, 2, 1, 0, 1], RULE_MAX, None),
    ],
)
def test_single_window_rule_and_pooling(codes, rule, weights):
    quantizer = basis_quantizer()
    frames = frames_with_codes(codes)
    out = quantizer(frames[None])
    assert out.window_rules.tolist() == [[rule]]
    if weights is None:
        expected = frames.max(0).values
    else:
        w = torch.tensor(weights, dtype=torch.float32)
        expected = (w[:, None] * frames).sum(0) / w.sum()
    torch.testing.assert_close(out.pooled[0, 0], expected)


def test_two_distinct_codes_weighted_by_position_when_triangular():
    quantizer = basis_quantizer(weighted_pooling="triangular")
    frames = frames_with_codes([0, 0, 1, 1, 1])
    out = quantizer(frames[None])
    w = torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0])
    assert out.window_rules.tolist() == [[RULE_WEIGHTED]]
    torch.testing.assert_close(out.pooled[0, 0], (w[:, None] * frames).sum(0) / w.sum())


def test_window_count_is_about_a_third():
    lengths = torch.tensor([0, 1, 5, 6, 8, 9, 4500])
    # 1 window up to 5 frames, then one per 3 frames started; 4500 frames -> 1500 windows.
    assert num_windows(lengths, 5, 3).tolist() == [0, 1, 1, 2, 2, 3, 1500]


def test_overlapping_windows_and_partial_last_window():
    quantizer = basis_quantizer()
    codes = [0, 0, 0, 1, 1, 2, 3, 3]  # windows: [0..4] 2 codes, [3..7] 3 codes (1,2,3)
    frames = frames_with_codes(codes)
    out = quantizer(frames[None])
    assert out.window_rules.tolist() == [[RULE_WEIGHTED, RULE_WEIGHTED]]
    second = frames[3:8]
    w = torch.tensor([2.0, 2.0, 1.0, 2.0, 2.0])
    torch.testing.assert_close(out.pooled[0, 1], (w[:, None] * second).sum(0) / w.sum())

    # 7 frames: the second window [3..6] is partial (4 real frames)
    out = quantizer(frames[None, :7])
    partial = frames[3:7]
    w = torch.tensor([2.0, 2.0, 1.0, 1.0])  # codes 1, 1, 2, 3
    torch.testing.assert_close(out.pooled[0, 1], (w[:, None] * partial).sum(0) / w.sum())


def test_padded_batch_matches_items_alone():
    torch.manual_seed(0)
    quantizer = PoolingVQQuantizer(6, 3)
    lengths = [11, 7, 1, 5]
    features = torch.randn(len(lengths), 11, 6)
    mask = torch.arange(11)[None] < torch.tensor(lengths)[:, None]
    features = features.masked_fill(~mask[..., None], 1e6)  # padding must never leak into a result
    out = quantizer(features, mask)
    assert out.pooled_lengths.tolist() == num_windows(torch.tensor(lengths), 5, 3).tolist()
    for b, length in enumerate(lengths):
        alone = quantizer(features[b : b + 1, :length])
        windows = alone.pooled.shape[1]
        torch.testing.assert_close(out.pooled[b, :windows], alone.pooled[0])
        assert out.window_rules[b, :windows].tolist() == alone.window_rules[0].tolist()
        assert (out.window_rules[b, windows:] == -1).all()
        assert (out.pooled[b, windows:] == 0).all()
        assert (out.codes[b, length:] == -1).all()


@pytest.mark.parametrize("weighted_pooling", ["code_frequency", "triangular"])
@pytest.mark.parametrize("pooling", ["poolingvq", "avg", "max"])
def test_vectorised_pooling_matches_window_by_window_reference(pooling, weighted_pooling):
    torch.manual_seed(1)
    quantizer = PoolingVQQuantizer(8, 4, pooling=pooling, weighted_pooling=weighted_pooling)
    lengths = torch.tensor([40, 33, 5, 6, 2, 17])
    features = torch.randn(len(lengths), 40, 8)
    mask = torch.arange(40)[None] < lengths[:, None]
    out = quantizer(features, mask)
    force = {"avg": RULE_AVG, "max": RULE_MAX}.get(pooling)
    pooled, rules = reference_window_pooling(
        features, mask, out.codes, weighted_pooling=weighted_pooling, force_rule=force
    )
    assert out.window_rules.tolist() == rules.tolist()
    torch.testing.assert_close(out.pooled, pooled)


def test_all_three_rules_occur_on_runs_of_codes():
    # codes that stay for a few frames then change, as real audio does: every rule must appear.
    codes = [0] * 6 + [1, 1, 2, 2, 2, 3, 0, 1, 2, 3, 3, 3, 3, 3, 3, 3]
    out = basis_quantizer()(frames_with_codes(codes)[None])
    assert set(out.window_rules[0].tolist()) == {RULE_AVG, RULE_WEIGHTED, RULE_MAX}


def test_rules_ignore_padded_frames():
    codes = torch.tensor([[[0, 0, 1, 2, 3]]])
    valid = torch.tensor([[[True, True, False, False, False]]])
    rules, weights = window_rules_and_weights(codes, valid)
    assert rules.tolist() == [[RULE_AVG]]
    torch.testing.assert_close(weights, torch.tensor([[[0.5, 0.5, 0.0, 0.0, 0.0]]]))


def test_no_pooling_keeps_the_sequence():
    features = torch.randn(2, 9, 4)
    mask = torch.tensor([[True] * 9, [True] * 4 + [False] * 5])
    out = PoolingVQQuantizer(4, 2, pooling="none")(features, mask)
    assert out.pooled_lengths.tolist() == [9, 4]
    assert out.codes is None and float(out.vq_loss) == 0.0
    torch.testing.assert_close(out.pooled[0], features[0])


# --- eq. 4: VQ loss ------------------------------------------------------------------------------------------------


def test_vq_loss_value_and_gradients():
    quantizer = basis_quantizer(dim=2, commitment_weight=0.5)
    features = torch.tensor([[[2.0, 0.5], [0.0, 3.0], [9.0, 9.5]]], requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    out = quantizer(features, mask)
    # codes 0 and 1: squared distances (1 + 0.25) and (0 + 4); mean over 2 frames x 2 dims
    codebook_term = (1.25 + 4.0) / 4
    torch.testing.assert_close(out.vq_loss, torch.tensor(codebook_term * 1.5))
    out.vq_loss.backward()
    # d/dP_c of ||sg(X) - P_c||^2 / 4  =  2 (P_c - X) / 4
    expected = torch.tensor([[2 * (1 - 2.0) / 4, 2 * (0 - 0.5) / 4], [2 * (0 - 0.0) / 4, 2 * (1 - 3.0) / 4]])
    torch.testing.assert_close(quantizer.codebook.grad, expected)
    # commitment: 0.5 * 2 (X - P_c) / 4 on real frames, nothing on padding
    torch.testing.assert_close(features.grad[0, 0], 0.5 * 2 * torch.tensor([1.0, 0.5]) / 4)
    assert (features.grad[0, 2] == 0).all()


# --- k-means start ----------------------------------------------------------------------------------------------


def test_kmeans_recovers_separated_directions():
    generator = torch.Generator().manual_seed(0)
    directions = torch.eye(4) * 5
    frames = directions.repeat_interleave(50, 0) + 0.05 * torch.randn(200, 4, generator=generator)
    codebook = cosine_kmeans(frames, 4, generator=generator)
    matched = torch.nn.functional.normalize(codebook, dim=-1) @ torch.eye(4)
    assert sorted(matched.argmax(0).tolist()) == [0, 1, 2, 3]
    assert matched.max(0).values.min() > 0.99
    # centroids sit on the data (means in raw space), not on the unit sphere
    torch.testing.assert_close(codebook.norm(dim=-1), torch.full((4,), 5.0), atol=0.1, rtol=0)


def test_kmeans_with_fewer_distinct_frames_than_codes_and_duplicates():
    frames = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]).repeat(30, 1)
    quantizer = PoolingVQQuantizer(3, 8)
    quantizer.init_codebook(frames)
    assert bool(quantizer.initialized)
    assert torch.isfinite(quantizer.codebook).all()
    codes = quantizer.assign_codes(frames[None, :2])[0]
    # both distinct frames are represented exactly by their own codes
    torch.testing.assert_close(quantizer.codebook[codes], frames[:2])


def test_kmeans_handles_a_single_frame_and_rejects_none():
    quantizer = PoolingVQQuantizer(3, 4)
    quantizer.init_codebook(torch.tensor([[0.0, 1.0, 1.0]]))
    assert torch.isfinite(quantizer.codebook).all()
    with pytest.raises(ValueError, match="no frames"):
        quantizer.init_codebook([])


def test_kmeans_from_a_stream_is_bounded_and_seeded():
    generator = torch.Generator().manual_seed(3)
    chunks = [torch.randn(100, 5, generator=generator) for _ in range(20)]
    sample = sample_frames(iter(chunks), max_frames=150, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (150, 5)
    everything = torch.cat(chunks)
    # every sampled frame is one of the stream's frames
    assert (sample[:, None] == everything[None]).all(-1).any(-1).all()
    a, b = PoolingVQQuantizer(5, 6), PoolingVQQuantizer(5, 6)
    a.init_codebook(iter(chunks), max_frames=150, seed=7)
    b.init_codebook(iter(chunks), max_frames=150, seed=7)
    torch.testing.assert_close(a.codebook, b.codebook)


def test_kmeans_from_a_whole_stream_equals_the_tensor():
    generator = torch.Generator().manual_seed(4)
    frames = torch.randn(60, 5, generator=generator)
    a, b = PoolingVQQuantizer(5, 4), PoolingVQQuantizer(5, 4)
    a.init_codebook(frames, seed=1)
    b.init_codebook(iter(frames.split(7)), seed=1)
    # the same frames (in another order) and the same seed: the seeding works on sorted distinct directions
    assert torch.allclose(a.codebook.sort(0).values, b.codebook.sort(0).values, atol=1e-5)


def test_gradients_reach_trainable_features_through_every_rule():
    # with unfrozen encoders the pooled windows must carry gradients back to the frames
    quantizer = basis_quantizer()
    codes = [0] * 6 + [1, 1, 2, 2, 2, 3, 0, 1, 2, 3, 3, 3]
    frames = frames_with_codes(codes)[None].requires_grad_(True)
    out = quantizer(frames)
    out.pooled.sum().backward()
    assert frames.grad is not None and (frames.grad.abs().sum(-1) > 0).all()


def test_fused_pooling_matches_eager():
    pytest.importorskip("torch._inductor")
    torch.manual_seed(5)
    features = torch.randn(3, 23, 8)
    mask = torch.arange(23)[None] < torch.tensor([23, 12, 4])[:, None]
    eager = PoolingVQQuantizer(8, 4)
    fused = PoolingVQQuantizer(8, 4, fused_pooling=True)
    fused.load_state_dict(eager.state_dict())
    try:
        fused_out = fused(features, mask)
    except Exception as error:  # no C++ compiler for inductor: the eager path is the default anyway
        pytest.skip(f"torch.compile unavailable here: {type(error).__name__}: {error}")
    torch.testing.assert_close(fused_out.pooled, eager(features, mask).pooled)
