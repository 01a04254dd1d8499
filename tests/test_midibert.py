"""MIDI-BERT encoder: relative attention against the formula written out naively, padding, shapes, saving."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shared_data import DATA_DIR, needs_data

from poolingvq.configuration_poolingvq import MidiBertConfig, PoolingVQConfig
from poolingvq.midibert_poolingvq import MidiBertModel, MidiBertSelfAttention, relative_key_query_scores

MAX_POSITIONS = 512


def tiny_midi_config(**overrides) -> MidiBertConfig:
    config = PoolingVQConfig.from_preset("tiny").midi_config
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def random_cp_tokens(
    config: MidiBertConfig, batch: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """[batch, length, 4] real (non-PAD, non-MASK) CP tokens: PAD and MASK are each class's last two ids."""
    columns = [
        torch.randint(0, size - 2, (batch, length), generator=generator) for size in config.cp_vocab_sizes
    ]
    return torch.stack(columns, dim=-1)


def naive_relative_scores(query: torch.Tensor, key: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """q_l . D[l - r + 511] + k_r . D[l - r + 511], with the [L, L, d] tensor D built explicitly."""
    length = query.shape[-2]
    distance = torch.tensor([[left - right for right in range(length)] for left in range(length)])
    embedded = table[distance + MAX_POSITIONS - 1]  # [L, L, d]
    return torch.einsum("bhld,lrd->bhlr", query, embedded) + torch.einsum("bhrd,lrd->bhlr", key, embedded)


def naive_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, table: torch.Tensor, key_mask: torch.Tensor
) -> torch.Tensor:
    """softmax((q.k + q.D + k.D) / sqrt(d) - big * padded_key) v, per head: [B, h, L, d]."""
    scores = torch.einsum("bhld,bhrd->bhlr", query, key) + naive_relative_scores(query, key, table)
    scores = scores / math.sqrt(query.shape[-1])
    scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    return torch.einsum("bhlr,bhrd->bhld", scores.softmax(-1), value)


@pytest.mark.parametrize("length", [1, 37, MAX_POSITIONS])  # 512: the whole distance table is in use
def test_relative_scores_match_the_naive_formula(length: int) -> None:
    generator = torch.Generator().manual_seed(0)
    query, key = torch.randn(2, 2, 3, length, 8, generator=generator)
    table = torch.randn(2 * MAX_POSITIONS - 1, 8, generator=generator)
    fast = relative_key_query_scores(query, key, table, MAX_POSITIONS)
    torch.testing.assert_close(fast, naive_relative_scores(query, key, table), atol=1e-5, rtol=1e-5)


def test_self_attention_matches_the_naive_formula_with_padding() -> None:
    config = tiny_midi_config(attention_probs_dropout_prob=0.0)
    attention = MidiBertSelfAttention(config).eval()
    torch.nn.init.normal_(attention.distance_embedding.weight)  # large enough that positions matter
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 23, config.hidden_size, generator=generator)
    key_mask = torch.ones(2, 23, dtype=torch.bool)
    key_mask[1, 15:] = False
    additive = (~key_mask[:, None, None, :]).float() * torch.finfo(torch.float32).min

    with torch.no_grad():
        context = attention(hidden, additive)
        heads = [
            attention._split_heads(layer(hidden))
            for layer in (attention.query, attention.key, attention.value)
        ]
        expected = naive_attention(*heads, attention.distance_embedding.weight, key_mask)
    torch.testing.assert_close(context, expected.transpose(1, 2).flatten(-2), atol=1e-5, rtol=1e-5)


def test_real_positions_ignore_appended_padding() -> None:
    config = tiny_midi_config()
    model = MidiBertModel(config).eval()
    generator = torch.Generator().manual_seed(2)
    tokens = random_cp_tokens(config, 2, 30, generator)
    padding = torch.tensor(config.cp_pad_token).expand(2, 12, 4)
    with torch.no_grad():
        alone = model(tokens).last_hidden_state
        padded = model(torch.cat([tokens, padding], dim=1)).last_hidden_state
    assert padded.shape == (2, 42, config.hidden_size)
    torch.testing.assert_close(padded[:, :30], alone, atol=1e-5, rtol=1e-5)


def test_explicit_mask_equals_the_default_one_and_all_ones_differs() -> None:
    config = tiny_midi_config()
    model = MidiBertModel(config).eval()
    tokens = random_cp_tokens(config, 1, 20, torch.Generator().manual_seed(3))
    tokens[:, 14:] = torch.tensor(config.cp_pad_token)
    with torch.no_grad():
        default = model(tokens).last_hidden_state
        explicit = model(tokens, attention_mask=(torch.arange(20) < 14).long()[None]).last_hidden_state
        attend_all = model(tokens, attention_mask=torch.ones(1, 20)).last_hidden_state
    torch.testing.assert_close(default, explicit)
    assert not torch.allclose(default[:, :14], attend_all[:, :14], atol=1e-4)


def test_tiny_forward_shapes_and_hidden_states() -> None:
    config = tiny_midi_config()
    model = MidiBertModel(config).eval()
    tokens = random_cp_tokens(config, 3, 17, torch.Generator().manual_seed(4))
    with torch.no_grad():
        output = model(tokens, output_hidden_states=True)
        without = model(tokens)
    assert output.last_hidden_state.shape == (3, 17, config.hidden_size)
    assert len(output.hidden_states) == config.num_hidden_layers + 1
    assert all(state.shape == (3, 17, config.hidden_size) for state in output.hidden_states)
    torch.testing.assert_close(output.hidden_states[-1], output.last_hidden_state)
    assert without.hidden_states is None
    assert torch.isfinite(output.last_hidden_state).all()


def test_all_padding_row_stays_finite() -> None:
    config = tiny_midi_config()
    model = MidiBertModel(config).eval()
    tokens = torch.tensor(config.cp_pad_token).expand(1, 8, 4)
    with torch.no_grad():
        assert torch.isfinite(model(tokens).last_hidden_state).all()


def test_bad_inputs_raise() -> None:
    config = tiny_midi_config(max_position_embeddings=16)
    model = MidiBertModel(config).eval()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(random_cp_tokens(config, 1, 17, torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match=r"\[batch, length, 4\]"):
        model(torch.zeros(1, 8, 3, dtype=torch.long))


def test_no_unused_bert_tables() -> None:
    """No 30522-word table and no absolute positions: only the relative-distance tables depend on length."""
    names = MidiBertModel(tiny_midi_config()).state_dict().keys()
    assert not any("word_embeddings" in name or "position_embeddings" in name for name in names)
    assert not any(name.startswith("pooler") for name in names)


def test_save_and_load_round_trip(tmp_path) -> None:
    config = tiny_midi_config()
    model = MidiBertModel(config).eval()
    model.save_pretrained(tmp_path)
    loaded = MidiBertModel.from_pretrained(tmp_path).eval()
    saved_fields = {name: value for name, value in model.config.to_dict().items() if name != "_name_or_path"}
    assert {name: loaded.config.to_dict()[name] for name in saved_fields} == saved_fields
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    tokens = random_cp_tokens(config, 2, 11, torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens).last_hidden_state, model(tokens).last_hidden_state)


@pytest.mark.real_data
@needs_data
def test_midibert_padding_of_real_emopia_rows_is_ignored() -> None:
    """MIDI-BERT's own EMOPIA token rows, padded to 512 with its PAD row: the real tokens' outputs are those of
    the unpadded row, and the PAD row is exactly what the default mask recognises."""
    rows = torch.from_numpy(np.load(DATA_DIR / "midibert" / "emopia_test.npy")[:3])
    config = tiny_midi_config()
    model = MidiBertModel(config).eval()
    real_lengths = (rows[..., 0] != config.cp_pad_token[0]).sum(dim=1).tolist()
    assert all(0 < length < 512 for length in real_lengths)
    assert (rows[0, real_lengths[0] :] == torch.tensor(config.cp_pad_token)).all()
    with torch.no_grad():
        padded = model(rows).last_hidden_state
        for row, length in enumerate(real_lengths):
            alone = model(rows[row : row + 1, :length]).last_hidden_state[0]
            torch.testing.assert_close(padded[row, :length], alone, atol=1e-5, rtol=1e-5)
