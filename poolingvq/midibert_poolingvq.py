"""MIDI-BERT-Piano (Chou et al., 2021), the frozen MIDI encoder of PoolingVQ, re-implemented so that its
official checkpoints load with a plain rename.

Remote code: copied flat into every saved model folder; imports only torch, transformers and its siblings.

A compound-word (CP) token is a row `[Bar, Position, Pitch, Duration]` of class indices. MIDI-BERT embeds each
class separately, concatenates the four embeddings, projects them to the BERT width and runs a transformers-4
`BertModel` with `position_embedding_type="relative_key_query"`. transformers 5's `BertModel` no longer has
relative attention, so the encoder is rebuilt here, layer for layer, with the same parameter names.

Official checkpoint -> this module (`poolingvq.weights.load_midibert_state_dict` does it):

    word_emb.{0..3}.lut.weight          -> word_emb.{0..3}.lut.weight          (unchanged)
    in_linear.{weight,bias}             -> in_linear.{weight,bias}             (unchanged)
    bert.embeddings.token_type_embeddings / LayerNorm -> embeddings.token_type_embeddings / LayerNorm
    bert.encoder.layer.N.*              -> encoder.layer.N.*                   (same names below it)
    bert.embeddings.word_embeddings, bert.embeddings.position_embeddings, bert.pooler.*: dropped, MIDI-BERT
        never uses them (inputs are given as embeddings, and relative attention adds no absolute positions).

A fine-tuned checkpoint has the same keys under `midibert.` plus its classification head, which is dropped.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.bert.modeling_bert import BertIntermediate, BertOutput, BertSelfOutput

from .configuration_poolingvq import MidiBertConfig
from .files_poolingvq import PlainModeSaving

#: The four CP classes, in the order of the last axis of `input_ids`.
CP_CLASSES: tuple[str, ...] = ("Bar", "Position", "Pitch", "Duration")


class MidiBertCPEmbedding(nn.Module):
    """One CP class's embedding, scaled by `sqrt(width)` as in the Transformer paper (and MIDI-BERT)."""

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.lut = nn.Embedding(vocab_size, width)
        self.scale = math.sqrt(width)

    def forward(self, class_ids: torch.LongTensor) -> torch.Tensor:
        """[B, L] class indices -> [B, L, width]."""
        return self.lut(class_ids) * self.scale


class MidiBertEmbeddings(nn.Module):
    """What is left of BERT's embeddings once the input is an embedding and positions are relative:
    the token-type embedding of type 0 (MIDI-BERT never passes token types), LayerNorm and dropout."""

    def __init__(self, config: MidiBertConfig) -> None:
        super().__init__()
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """[B, L, hidden] -> [B, L, hidden]."""
        return self.dropout(self.LayerNorm(inputs_embeds + self.token_type_embeddings.weight[0]))


def relative_key_query_scores(
    query: torch.Tensor, key: torch.Tensor, distance_table: torch.Tensor, max_positions: int
) -> torch.Tensor:
    """BERT's `relative_key_query` position scores `q_l . D[l - r] + k_r . D[l - r]`, unscaled.

    Args:
        query, key: [B, heads, L, head_dim].
        distance_table: [2 * max_positions - 1, head_dim]; row `d + max_positions - 1` embeds distance `d`.
        max_positions: the model's `max_position_embeddings`.

    Returns:
        [B, heads, L, L], entry (l, r) for query position l and key position r.

    transformers 4 gathered a [L, L, head_dim] tensor of embeddings and contracted it with einsum. Here each
    token is scored against the 2L - 1 distances that can occur ([B, h, L, 2L-1], the size of the attention
    scores twice over, and no head_dim factor) and the entry for each (l, r) pair is then picked out with
    one gather.
    """
    length = query.shape[-2]
    if length > max_positions:
        raise ValueError(
            f"sequence of {length} tokens is longer than max_position_embeddings={max_positions}"
        )
    # Distances -(L-1)..(L-1): table rows max_positions-L .. max_positions+L-2; local row j <-> distance j-(L-1).
    table = distance_table[max_positions - length : max_positions + length - 1].to(query.dtype)
    positions = torch.arange(length, device=query.device)
    local_row = positions[:, None] - positions[None, :] + length - 1  # [L, L]: (l, r) -> row of distance l-r
    batch_heads = (*query.shape[:2], length, length)
    query_scores = (query @ table.T).gather(-1, local_row.expand(batch_heads))  # (l, r): q_l . D[l-r]
    # For the keys the token is r, so gather with the transposed index, then put l first again.
    key_scores = (key @ table.T).gather(-1, local_row.T.expand(batch_heads)).transpose(-1, -2)
    return query_scores + key_scores


class MidiBertSelfAttention(nn.Module):
    """transformers-4 `BertSelfAttention` with `position_embedding_type="relative_key_query"`:
    `softmax((q.k + q.D + k.D) / sqrt(head_dim) + mask) v`, D a learned embedding of the distance l - r."""

    def __init__(self, config: MidiBertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.max_positions = config.max_position_embeddings
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.distance_embedding = nn.Embedding(2 * config.max_position_embeddings - 1, self.head_dim)
        self.dropout_prob = config.attention_probs_dropout_prob

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        """[B, L, hidden] -> [B, heads, L, head_dim]."""
        return states.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        """[B, L, hidden], additive key mask [B, 1, 1, L] -> context [B, L, hidden]."""
        query = self._split_heads(self.query(hidden_states))
        key = self._split_heads(self.key(hidden_states))
        value = self._split_heads(self.value(hidden_states))
        position_bias = relative_key_query_scores(
            query, key, self.distance_embedding.weight, self.max_positions
        )
        # SDPA adds attn_mask after scaling q.k by 1/sqrt(head_dim), so the position terms are scaled here.
        attn_bias = position_bias / math.sqrt(self.head_dim) + additive_mask
        context = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_bias, dropout_p=self.dropout_prob if self.training else 0.0
        )
        return context.transpose(1, 2).flatten(-2)


class MidiBertAttention(nn.Module):
    """Self-attention + output projection, residual and LayerNorm (BERT's `attention.self` / `attention.output`)."""

    def __init__(self, config: MidiBertConfig) -> None:
        super().__init__()
        self.self = MidiBertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden_states, additive_mask), hidden_states)


class MidiBertLayer(nn.Module):
    """One post-LayerNorm BERT layer: attention, then the GELU feed-forward, each with residual + LayerNorm."""

    def __init__(self, config: MidiBertConfig) -> None:
        super().__init__()
        self.attention = MidiBertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        """[B, L, hidden] -> [B, L, hidden]."""
        attended = self.attention(hidden_states, additive_mask)
        return self.output(self.intermediate(attended), attended)


class MidiBertEncoder(nn.Module):
    """The stack of layers, named `encoder.layer.N` as in BERT (the forward loop lives in the model)."""

    def __init__(self, config: MidiBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(MidiBertLayer(config) for _ in range(config.num_hidden_layers))


class MidiBertPreTrainedModel(PlainModeSaving, PreTrainedModel):
    config_class = MidiBertConfig
    base_model_prefix = "midibert"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: N(0, initializer_range) weights, zero biases, LayerNorm at identity."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class MidiBertModel(MidiBertPreTrainedModel):
    """MIDI-BERT: CP tokens [B, L, 4] -> contextual embeddings [B, L, hidden].

    Parameter names follow the official checkpoint (see the module docstring for the mapping).
    """

    def __init__(self, config: MidiBertConfig) -> None:
        super().__init__(config)
        self.word_emb = nn.ModuleList(
            MidiBertCPEmbedding(vocab_size, config.cp_embedding_size) for vocab_size in config.cp_vocab_sizes
        )
        self.in_linear = nn.Linear(len(CP_CLASSES) * config.cp_embedding_size, config.hidden_size)
        self.embeddings = MidiBertEmbeddings(config)
        self.encoder = MidiBertEncoder(config)
        self.post_init()

    def default_attention_mask(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """[B, L, 4] -> [B, L] long mask, 1 on real tokens: rows whose Bar class is not the padding Bar.

        This is the mask MIDI-BERT pre-trained with. (Its own emotion fine-tuning passed all ones instead,
        letting real tokens also attend to padding; pass such a mask explicitly to reproduce that.)
        """
        return (input_ids[..., 0] != self.config.cp_pad_token[0]).long()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """Encode CP tokens.

        Args:
            input_ids: [B, L, 4] class indices (Bar, Position, Pitch, Duration), L <= max_position_embeddings.
            attention_mask: [B, L], 1 for tokens to attend to, 0 for padding; by default
                [`default_attention_mask`].
            output_hidden_states: also return the embedding output and every layer's output.

        Returns:
            `BaseModelOutput` with `last_hidden_state` [B, L, hidden] and, when asked, `hidden_states`: a tuple
            of num_hidden_layers + 1 tensors [B, L, hidden] (embeddings first), as BERT returns them.
        """
        if input_ids.ndim != 3 or input_ids.shape[-1] != len(CP_CLASSES):
            raise ValueError(
                f"input_ids must be [batch, length, 4] CP tokens, got shape {tuple(input_ids.shape)}"
            )
        if attention_mask is None:
            attention_mask = self.default_attention_mask(input_ids)
        cp_embeddings = torch.cat([embed(input_ids[..., i]) for i, embed in enumerate(self.word_emb)], dim=-1)
        hidden_states = self.embeddings(self.in_linear(cp_embeddings))
        # Padded keys get the most negative finite value, as transformers 4 did (not -inf, so that a row of
        # nothing but padding still gives a finite, uniform softmax instead of NaN).
        dtype = hidden_states.dtype
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

        all_hidden_states = [hidden_states]
        for layer in self.encoder.layer:
            hidden_states = layer(hidden_states, additive_mask)
            all_hidden_states.append(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
        )


__all__ = ["CP_CLASSES", "MidiBertModel", "MidiBertPreTrainedModel", "relative_key_query_scores"]
