"""Configuration of PoolingVQ and of its MIDI-BERT encoder.

Remote code: copied flat into every saved model folder; imports only transformers and its own siblings.

`PoolingVQConfig` holds two sub-configurations, one per frozen encoder, and the settings of the three parts
that are trained: the PoolingVQ quantizer, the two-stage cross-attention fusion and the classification head.

Where the paper (PoolingVQ, multimodal music emotion recognition) leaves a choice open, the field below
documents the choice and why; every such choice is a field, so an ablation is a config change.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .tokenization_poolingvq import CP_VOCAB_SIZES, PAD_TOKEN

#: How the statistics of MIDI transcribed from a recording may be read (`PoolingVQConfig.transcribed_statistics`)
TRANSCRIBED_STATISTICS_READINGS = ("unknown", "as_transcribed")

#: The four Russell quadrants, as EMOPIA and VGMIDI label them.
QUADRANT_LABELS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
QUADRANT_MEANINGS: dict[str, str] = {
    "Q1": "happy / excited (valence +, arousal +)",
    "Q2": "tense / angry (valence -, arousal +)",
    "Q3": "sad / depressed (valence -, arousal -)",
    "Q4": "calm / relaxed (valence +, arousal -)",
}

#: MERT-v1-95M as a transformers `HubertConfig`: 768 wide, 12 layers of 12 heads, 7 conv layers whose strides
#: multiply to 320 samples, i.e. 75 frames/s at MERT's own 24 kHz. Spec-augment and layer-drop are off: the
#: encoder is frozen and only ever used for inference.
MERT_V1_95M_AUDIO_CONFIG: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "conv_dim": [512] * 7,
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "do_stable_layer_norm": False,
    "feat_proj_layer_norm": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "layer_norm_eps": 1e-5,
    "apply_spec_augment": False,
    "layerdrop": 0.0,
    "sampling_rate": 24000,
}

#: The tiny variants used by tests: same topology (and so the same 75 frames/s), a few hundred thousand
#: parameters in all.
TINY_AUDIO_CONFIG: dict[str, Any] = {
    **MERT_V1_95M_AUDIO_CONFIG,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [32] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}
TINY_MIDI_CONFIG: dict[str, Any] = {
    "cp_embedding_size": 16,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}


#: The download-free variant (issue 7): a log-mel front end and a small MIDI-BERT pre-trained here
#: (`poolingvq pretrain-midi`), with a fusion sized to them.
OFFLINE_MIDI_CONFIG: dict[str, Any] = {
    "cp_embedding_size": 64,
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
}


class MidiBertConfig(PreTrainedConfig):
    r"""MIDI-BERT-Piano (Chou et al.) as used by PoolingVQ: compound-word (CP) embeddings and a BERT encoder.

    A CP token is a row of four class indices `[Bar, Position, Pitch, Duration]`. Each class has its own
    embedding of `cp_embedding_size` scaled by `sqrt(cp_embedding_size)`; the four are concatenated and projected
    to `hidden_size`, then a BERT encoder with `relative_key_query` attention (no absolute position embedding
    is added) reads the sequence. The defaults are MIDI-BERT's pre-training configuration.

    Args:
        cp_vocab_sizes: vocabulary size of each CP class, Bar / Position / Pitch / Duration (incl. PAD, MASK).
        cp_pad_token: the padding row (the tokenizer's `PAD_TOKEN`, `[2, 16, 86, 64]` in MIDI-BERT's dictionary).
        cp_embedding_size: width of each class embedding (256 in MIDI-BERT).
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
        hidden_dropout_prob, attention_probs_dropout_prob, layer_norm_eps, initializer_range: BERT's.
        max_position_embeddings: longest sequence; relative distances span `2 * max - 1` embeddings.
        type_vocab_size: BERT's token types; only type 0 is ever added, as MIDI-BERT does.
    """

    model_type: ClassVar[str] = "poolingvq_midibert"
    base_config_key: ClassVar[str] = "midi_config"

    # the tokenizer's dictionary: an encoder reads the ids `CPMidiTokenizer` writes
    cp_vocab_sizes: list[int] | tuple[int, ...] = CP_VOCAB_SIZES
    cp_pad_token: list[int] | tuple[int, ...] = PAD_TOKEN
    cp_embedding_size: int = 256
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        check_field_types(self)
        self.cp_vocab_sizes = list(self.cp_vocab_sizes)
        self.cp_pad_token = list(self.cp_pad_token)
        if len(self.cp_vocab_sizes) != 4 or len(self.cp_pad_token) != 4:
            raise ValueError(
                "MIDI-BERT's compound words have exactly four classes: Bar, Position, Pitch, Duration"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of {self.num_attention_heads} heads"
            )


class LogMelConfig(PreTrainedConfig):
    r"""A frozen spectral front end that needs no downloaded weights, at MERT's 75 frames/s.

    The audio encoder of models trained where MERT cannot be fetched: a magnitude STFT (Hann window of `n_fft`,
    hop `hop_length` = 320 samples at 24 kHz, so PoolingVQ sees the frame rate it sees with MERT), a mel filter bank
    (Slaney) of `num_mel_bins`, log10, scaled as Whisper does (`(x + 4) / 4`). It has no trainable weights: its
    features are as cacheable as a frozen MERT's, and `hidden_size` (mel bins + chroma bins + onset strength) is
    what the quantizer and the fusion read. Each frame is `[log-mel | chroma | onset strength]`.

    Args:
        level: what the log-mel is measured against. `"clip_peak"` (issue 7's model): each clip's own loudest
            frame, the dynamic range clamped `dynamic_range` decades below it, so every clip looks equally loud.
            `"absolute"`: full scale (a fixed reference `absolute_peak`, in log10 units of the mel power), the
            floor `dynamic_range` decades below it. Loudness is the plainest cue of arousal (EMOPIA's MIDI: mean
            velocity 77 in Q1/Q2 against 54 in Q3/Q4); a per-clip level throws it away, so the default model uses
            `"absolute"`, with a feature extractor that leaves the waveform's level alone (`do_normalize=False`)
            and synthesis that keeps the MIDI velocities' level (`synthesize_midi(level="velocity")`).
        num_chroma_bins: 0, or 12 for a chroma (pitch-class) vector per frame, so that harmony (major / minor,
            consonance), the plainest cue of valence, is one linear map away rather than spread over 128 mel bins
            whose low bins cannot tell neighbouring semitones apart. Each frame's chroma is divided by its
            largest bin (level-free: loudness is the mel part's job).
        chroma_n_fft: the chroma's own, longer STFT window (4096 samples = 5.9 Hz bins at 24 kHz: semitones are
            resolved from about 100 Hz up; the mel's 1024-sample window resolves them only above ~400 Hz).
        onset_strength: add one channel of onset strength (the share of mel bins rising by more than 4 dB over
            two frames, a thresholded spectral flux): its average over a window grows with the notes per second, the
            second cue of arousal (EMOPIA: 8.6-10.2 notes/s in Q1/Q2 against 4.6-4.8 in Q3/Q4), which a pooled
            mel frame hides.
        key_profile_seconds: 0 (off), or the span of a centred window over which the chroma is averaged and
            correlated with the Krumhansl-Kessler profiles of the 12 major and the 12 minor keys; two channels,
            the best major and the best minor correlation. Mode (major against minor) is the textbook cue of
            valence, but it is a relation between pitch classes: the same chord in another key has another chroma
            vector, and no linear map of the chroma tells major from minor in every key. Needs `num_chroma_bins`
            12.
        chroma_reference: `"absolute"`: chroma bin 0 is C. `"key"`: bin 0 is the tonic of the key that correlates
            best over the same window (needs `key_profile_seconds`), so the chroma holds scale degrees. A piece
            transposed by a tone is the same piece to a listener; with absolute chroma its 12 bins are rolled, and
            a model trained on 767 clips, which cannot have met every melody in every key, may answer otherwise.
            Scale degrees keep harmony (which degrees sound) and drop the key, which says little about emotion on
            its own. The paper's MERT has no chroma, so no such choice.
    """

    model_type: ClassVar[str] = "poolingvq_logmel"
    base_config_key: ClassVar[str] = "audio_config"

    sampling_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 320
    num_mel_bins: int = 128
    min_frequency: float = 0.0
    max_frequency: float = 12000.0
    dynamic_range: float = 8.0
    level: str = "clip_peak"
    absolute_peak: float = 2.0
    num_chroma_bins: int = 0
    chroma_n_fft: int = 4096
    onset_strength: bool = False
    key_profile_seconds: float = 0.0
    chroma_reference: str = "absolute"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        check_field_types(self)
        if self.level not in ("clip_peak", "absolute"):
            raise ValueError(f"level={self.level!r}: choose 'clip_peak' or 'absolute'")
        if self.num_chroma_bins not in (0, 12, 24, 36):
            raise ValueError(
                f"num_chroma_bins={self.num_chroma_bins!r}: 0, or 12 (or 24, 36) bins per octave"
            )
        if self.chroma_reference not in ("absolute", "key"):
            raise ValueError(f"chroma_reference={self.chroma_reference!r}: choose 'absolute' or 'key'")
        if self.chroma_reference == "key" and not (
            self.num_chroma_bins == 12 and self.key_profile_seconds > 0
        ):
            raise ValueError(
                "chroma_reference='key' needs the key: num_chroma_bins=12 and key_profile_seconds > 0"
            )

    @property
    def hidden_size(self) -> int:
        keys = 2 if self.key_profile_seconds > 0 else 0
        return self.num_mel_bins + self.num_chroma_bins + int(self.onset_strength) + keys


#: The two kinds of audio encoder: `"mert"` (a transformers `HubertConfig`: MERT, or any HuBERT / wav2vec2-style
#: conv + transformer stack) and `"logmel"` (a [`LogMelConfig`]).
AUDIO_ENCODER_KINDS: tuple[str, ...] = ("mert", "logmel")


def audio_encoder_kind(audio_config: PreTrainedConfig) -> str:
    """`"logmel"` for a [`LogMelConfig`], else `"mert"`: by model type, not class, since remote code and the
    package may each have registered their own copy of the class. Every question about the audio encoder
    (its hop, its shortest input, whether padding changes its features, its name) starts here."""
    return "logmel" if getattr(audio_config, "model_type", None) == LogMelConfig.model_type else "mert"


def conv_receptive_field(conv_kernel: list[int], conv_stride: list[int]) -> int:
    """Samples a stack of 1-D convolutions needs to give one output frame (400 for MERT's stack: 1/60 s)."""
    field, hop = 1, 1
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        field += (kernel - 1) * hop
        hop *= stride
    return field


def frame_hop(audio_config: PreTrainedConfig) -> int:
    """Samples per encoder frame: the conv strides' product for MERT/HuBERT, `hop_length` for log-mel."""
    if audio_encoder_kind(audio_config) == "logmel":
        return int(audio_config.hop_length)
    hop = 1
    for stride in audio_config.conv_stride:
        hop *= stride
    return hop


def check_field_types(config: PreTrainedConfig, names: tuple[str, ...] | None = None) -> None:
    """Refuse a field declared `int`, `float`, `bool` or `str` that holds another type (as a hand-edited
    config.json can: `"codebook_size": "abc"`), naming the field; otherwise the first comparison with it fails
    with a TypeError that says nothing of where the value came from. An int is a float; a bool is not a number."""
    expected = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
    annotations = {name: str(kind) for name, kind in vars(type(config)).get("__annotations__", {}).items()}
    for name in names if names is not None else tuple(annotations):
        kinds = expected.get(str(annotations.get(name)))
        if kinds is None or not hasattr(config, name):
            continue
        value = getattr(config, name)
        wrong = not isinstance(value, kinds) or (kinds != (bool,) and isinstance(value, bool))
        if wrong:
            raise ValueError(
                f"{type(config).__name__}.{name} must be {annotations[name]}, got {value!r} "
                f"({type(value).__name__})"
            )


class PoolingVQConfig(PreTrainedConfig):
    r"""Configuration of [`PoolingVQForMusicEmotion`].

    Args:
        audio_config: the frozen audio encoder, a `HubertConfig` (MERT-v1-95M by default; `sampling_rate` 24000).
        midi_config: the frozen MIDI encoder, a [`MidiBertConfig`] (MIDI-BERT by default).
        max_audio_seconds: audio is cropped to this many seconds (the paper's 60 s).
        max_midi_tokens: CP tokens per MIDI row (MIDI-BERT's 512).
        audio_feature_layers: which hidden states of the audio encoder are averaged into the audio features
            (0 = the projected conv features, 12 = the last layer). The paper does not say. `None`, the
            default, averages all of them: MERT's own probing learns a weighted sum over every layer and
            finds emotion information spread over the middle and upper layers; a *fixed* average keeps the
            frozen features a single [T, 768] array that can be cached once per clip.
        midi_feature_layer: which MIDI-BERT hidden state feeds the fusion (-1, the last, as in MIDI-BERT's
            own fine-tuning).
        codebook_size: P, the number of code vectors (the paper sweeps it; 64 is our default).
        window_size, window_stride: the sliding window over the code sequence (5 and 3: the sequence shrinks
            to about a third).
        avg_max_distinct_codes: windows with at most this many distinct codes are average-pooled (1).
        weighted_max_distinct_codes: windows with more distinct codes than `avg_max_distinct_codes` and at
            most this many get a weighted average (3); windows with more are max-pooled.
        weighted_pooling: how the weighted average weighs a window's frames; the paper does not say.
            `"code_frequency"` (default) weighs each frame by how many frames of the window share its code:
            a window with 2-3 codes is a stable state with a few transitional frames, and this weighting keeps
            the stable state while still letting the transitions count, a natural middle between the plain
            average (one code) and the max (many codes). `"triangular"` weighs frames by their distance to the
            window's centre (1, 2, 3, 2, 1), the usual smoothing alternative.
        vq_loss_weight: weight of the VQ loss (eq. 4) added to the cross-entropy.
        commitment_weight: weight of the commitment term `||X - sg(Pc)||^2` inside the VQ loss.
        fused_pooling: pool with one kernel compiled by `torch.compile` (inductor: C++ on CPU, Triton on GPU)
            instead of the eager kernels; same results, about half the memory traffic. Off by default: the first
            call compiles for ~20 s and needs a compiler, and saved models must run anywhere.
        pooling: the paper's ablation of the pooling: `"poolingvq"` (the method), `"avg"` or `"max"` (every
            window average- or max-pooled), `"none"` (no pooling, the full frame sequence).
        modalities: `"audio+midi"` (the method), `"audio"` or `"midi"` alone (ablations).
        fusion_hidden_size: width of the fusion; both encoders are projected to it (768 = their own width).
        fusion_num_heads: heads of both cross-attentions (8; 768 / 8 = 96 per head).
        fusion_dropout: dropout on each cross-attention's output, before the residual sum.
        fusion_attention_dropout: dropout on the attention probabilities (0; the paper does not say). Dropping
            entries of the `[B, heads, windows, tokens]` attention map makes the whole block several times slower on
            CPU, as PyTorch's fused attention kernels do not take it; the output dropout already regularises the
            fusion.
        fusion_readout: what of the fusion the head reads. `"midi"`: the stage-2 sequence (MIDI tokens that have
            queried the note-aware audio), averaged over its tokens: the paper's figure, where stage 2's output is
            the last thing before the head. `"both"`: that, concatenated with the stage-1 sequence (pooled audio
            windows that have queried the MIDI) averaged over its windows. The paper does not say how the fused
            sequences become one vector. With `"midi"`, audio reaches the head only as a residual-normed average
            of 750 attended windows inside the MIDI stream, and an EMOPIA model (log-mel + small MIDI-BERT) learnt
            to ignore it: giving each test clip another clip's audio hardly moved its probabilities, where another
            clip's MIDI moved them a lot (`training.modality_reliance`, in every run's `metrics.json`). `"both"`
            gives the audio a direct path to the head.
        modality_dropout: probability, for each training piece, that one of its two modalities (audio or MIDI,
            equally likely) is hidden from the fusion and replaced by a learned "absent" token (0: the paper,
            which always has both). A model trained with it also answers when one modality is missing at
            inference, e.g. a recording without MIDI: most people who want to know a piece's mood have a
            recording only. It also keeps the fusion from leaning on one side alone (issue 7's model ignored its
            audio entirely). The paper does not do this; 0.3 hides each modality in 15% of the pieces.
        modality_dropout_midi_share: of the pieces `modality_dropout` hides a modality of, the share whose MIDI is
            hidden (the rest: their audio); 0.5, both alike. The answer from a recording alone is learnt only on the
            pieces whose MIDI is hidden, and when the MIDI side is the stronger one (`midi_statistics`) the fusion
            otherwise learns little from the audio; a larger share trains that path more.
        audio_normalization: how the fusion normalises audio frames before projecting them. `"layer"` (default): a
            LayerNorm over each frame's features, which removes a frame's overall level: right for MERT's hidden
            states and for log-mel at a per-clip level. `"standardize"`: each feature standardised by its mean and
            spread over the training frames (buffers fitted once before training, like the codebook's k-means),
            which keeps how loud a frame is relative to the others: needed when the front end measures absolute
            loudness (`LogMelConfig(level="absolute")`), since a louder frame is the same mel shape shifted up.
        classifier_dropout: dropout before the fully connected head.
        freeze_encoders: keep both encoders frozen (the paper). They then always run in eval mode.
        finetune_midi_encoder: train the MIDI encoder with the head (False: the paper). The paper freezes large
            pre-trained encoders; ours can be small and trained here (the `offline` preset's MIDI-BERT is 4 layers
            x 256), and MIDI-BERT's own emotion results come from fine-tuning it. When True the MIDI encoder keeps
            its gradients and follows train/eval mode while the audio encoder stays frozen (as `freeze_encoders`
            keeps it); `poolingvq train --finetune-midi-encoder` then feeds it CP tokens, not cached features.
        midi_statistics: give the model a MIDI's performance statistics too (False: the paper): one vector per
            piece of how it is played, in real time (`performance_poolingvq.STATISTIC_NAMES`: notes and onsets per
            second, velocity level and spread, sustain pedal, key-profile mode globally and per 4 s window, the
            pitch-class histogram in scale degrees, the intervals of chords...), standardized over the training
            pieces (buffers fitted before training, like the audio's), projected to `fusion_hidden_size` and
            concatenated to the fusion's vector. CP tokens carry neither velocity nor tempo (positions are in
            beats), the plainest cues of arousal; with these the MIDI path hears them, and hears them at any
            tempo. A hidden or missing MIDI hides them too (the "absent" MIDI token stands in). The audio-only
            ablation (`modalities="audio"`) reads no MIDI, so none of its statistics either (`reads_midi_statistics`).
        transcribed_statistics: how the statistics of MIDI transcribed from a recording (a recording given alone,
            `transcribe_missing_midi`; training's `--transcribed-training-audio`) are read. `"unknown"` (default):
            those a transcription cannot know (`performance_poolingvq.UNKNOWN_FROM_TRANSCRIPTION`: velocities,
            sustain pedal, durations) are NaN, read as the training clips' mean; right for a model that never saw
            a transcription in training. `"as_transcribed"`: all computed from the transcription as they are (its
            "velocities" are basic-pitch's confidences, its notes end as their sound fades); right for a model
            trained on transcriptions read the same way, which learns what they mean there. Training with
            transcriptions read as unknown taught the fusion to lean on the audio whenever the statistics were
            unknown (a recording in an unseen piano: 0.525 on EMOPIA validation, against 0.611 read as they are).
        label_meanings: what each quadrant means, for people reading predictions.
    """

    model_type: ClassVar[str] = "poolingvq"
    sub_configs_defaults: ClassVar[dict[str, Any]] = {
        # a HubertConfig holding MERT by default; {"model_type": "poolingvq_logmel", ...} selects the log-mel front end
        "audio_config": SubConfigSpec(AutoConfig, model_type="hubert", init_kwargs=MERT_V1_95M_AUDIO_CONFIG),
        "midi_config": MidiBertConfig,
    }

    audio_config: dict | PreTrainedConfig | None = None
    midi_config: dict | PreTrainedConfig | None = None
    max_audio_seconds: float = 60.0
    max_midi_tokens: int = 512
    audio_feature_layers: list[int] | None = None
    midi_feature_layer: int = -1
    codebook_size: int = 64
    window_size: int = 5
    window_stride: int = 3
    avg_max_distinct_codes: int = 1
    weighted_max_distinct_codes: int = 3
    weighted_pooling: str = "code_frequency"
    vq_loss_weight: float = 1.0
    commitment_weight: float = 1.0
    fused_pooling: bool = False
    pooling: str = "poolingvq"
    modalities: str = "audio+midi"
    fusion_hidden_size: int = 768
    fusion_num_heads: int = 8
    fusion_dropout: float = 0.1
    fusion_attention_dropout: float = 0.0
    fusion_readout: str = "midi"
    modality_dropout: float = 0.0
    modality_dropout_midi_share: float = 0.5
    audio_normalization: str = "layer"
    classifier_dropout: float = 0.1
    freeze_encoders: bool = True
    finetune_midi_encoder: bool = False
    midi_statistics: bool = False
    transcribed_statistics: str = "unknown"
    label_meanings: dict[str, str] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if self.id2label is None:
            self.id2label = dict(enumerate(QUADRANT_LABELS))
            self.label2id = {label: i for i, label in self.id2label.items()}
        if self.label_meanings is None:
            self.label_meanings = dict(QUADRANT_MEANINGS)
        super().__post_init__(**kwargs)
        self._check()

    def _check(self) -> None:
        check_field_types(self)
        choices = {
            "pooling": ("poolingvq", "avg", "max", "none"),
            "modalities": ("audio+midi", "audio", "midi"),
            "weighted_pooling": ("code_frequency", "triangular"),
            "fusion_readout": ("midi", "both"),
            "audio_normalization": ("layer", "standardize"),
            "transcribed_statistics": TRANSCRIBED_STATISTICS_READINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {allowed}")
        if not 1 <= self.window_stride <= self.window_size:
            raise ValueError(
                f"window_stride must be in [1, window_size]: {self.window_stride}, {self.window_size}"
            )
        if not 1 <= self.avg_max_distinct_codes <= self.weighted_max_distinct_codes:
            raise ValueError("need 1 <= avg_max_distinct_codes <= weighted_max_distinct_codes")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if not 0.0 <= self.modality_dropout_midi_share <= 1.0:
            raise ValueError(
                f"modality_dropout_midi_share must be in [0, 1], got {self.modality_dropout_midi_share}"
            )
        if self.codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {self.codebook_size}")
        if self.fusion_hidden_size % self.fusion_num_heads:
            raise ValueError(
                f"fusion_hidden_size {self.fusion_hidden_size} not divisible by {self.fusion_num_heads}"
            )

    @property
    def fused_size(self) -> int:
        """Width of the fusion's one vector per piece, which the head reads."""
        both_stages = self.modalities == "audio+midi" and self.fusion_readout == "both"
        return self.fusion_hidden_size * (1 + both_stages + self.reads_midi_statistics)

    @property
    def reads_midi_statistics(self) -> bool:
        """Whether the model reads the MIDI's performance statistics (`midi_statistics`, and a MIDI modality)."""
        return self.midi_statistics and self.modalities != "audio"

    @property
    def accepts_missing_modality(self) -> bool:
        """Whether the model answers from audio alone or MIDI alone (trained with `modality_dropout`)."""
        return self.modalities == "audio+midi" and self.modality_dropout > 0

    @property
    def audio_sampling_rate(self) -> int:
        """Sampling rate the audio encoder expects (24 kHz for MERT)."""
        return int(getattr(self.audio_config, "sampling_rate", 24000))

    @property
    def audio_frame_rate(self) -> float:
        """Encoder frames per second: the sampling rate over the samples per frame (75 for MERT and log-mel)."""
        return self.audio_sampling_rate / self.audio_frame_hop

    @property
    def audio_encoder_kind(self) -> str:
        """`"mert"` (a `HubertConfig`: MERT or another conv + transformer stack) or `"logmel"` (a
        [`LogMelConfig`]): the one answer to "which audio encoder is this?" that the model, the pipeline, the
        feature cache, training and the provenance records all read."""
        return audio_encoder_kind(self.audio_config)

    @property
    def audio_frame_hop(self) -> int:
        """Samples per encoder frame (320 for MERT's conv stack and for log-mel's hop)."""
        return frame_hop(self.audio_config)

    @property
    def audio_min_samples(self) -> int:
        """The shortest waveform the audio encoder gives a frame for: MERT's conv stack fails on fewer samples than
        its receptive field (400), and log-mel's first frame would be mostly padding below one hop."""
        if self.audio_encoder_kind == "logmel":
            return int(self.audio_config.hop_length)
        return conv_receptive_field(self.audio_config.conv_kernel, self.audio_config.conv_stride)

    @property
    def audio_padding_changes_features(self) -> bool:
        """Whether zero padding a waveform changes its features, so that clips of unequal length must not share
        a forward pass. True for MERT (`feat_extract_norm="group"`, as wav2vec2-base): its first conv layer
        normalises each channel over the whole padded input. False for a layer-normalised conv stack and for
        log-mel, whose centred STFT pads with zeros and whose frames are masked: a clip gets the same frames
        alone as padded in a batch."""
        if self.audio_encoder_kind == "logmel":
            return False
        return getattr(self.audio_config, "feat_extract_norm", "group") == "group"

    @property
    def audio_hears_absolute_level(self) -> bool:
        """Whether the audio encoder measures loudness against full scale (`LogMelConfig(level="absolute")`), so
        waveforms must keep their level and synthesis the performance's."""
        return self.audio_encoder_kind == "logmel" and self.audio_config.level == "absolute"

    @property
    def audio_encoder_description(self) -> str:
        """The audio encoder in a few words, for model cards: its mel bins and hop, or its layers and width."""
        audio = self.audio_config
        if self.audio_encoder_kind == "logmel":
            return f"log-mel ({audio.num_mel_bins} bins, hop {audio.hop_length})"
        return f"{audio.num_hidden_layers} x {audio.hidden_size}"

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PoolingVQConfig:
        """A named configuration: `"paper"` (MERT-v1-95M + MIDI-BERT, the paper's model), `"offline"` (a log-mel
        front end + a small MIDI-BERT: what can be built without downloaded weights) or `"tiny"` (tests).

        `overrides` replace top-level fields, e.g. `from_preset("paper", pooling="none")`.
        """
        if name == "paper":
            fields: dict[str, Any] = {}
        elif name == "tiny":
            fields = {
                "audio_config": dict(TINY_AUDIO_CONFIG),
                "midi_config": dict(TINY_MIDI_CONFIG),
                "codebook_size": 16,
                "fusion_hidden_size": 32,
                "fusion_num_heads": 2,
            }
        elif name == "offline":
            fields = {
                # absolute loudness, chroma and onset strength: the cues of arousal and valence a listener
                # hears (see LogMelConfig); issue 7's model, with a per-clip level and mel bins only, was deaf to
                # loudness and tempo
                "audio_config": {
                    "model_type": "poolingvq_logmel",
                    "level": "absolute",
                    "num_chroma_bins": 12,
                    "onset_strength": True,
                    "key_profile_seconds": 4.0,
                },
                "midi_config": dict(OFFLINE_MIDI_CONFIG),
                # the head reads both stages (audio gets a direct path) and learns to answer from one modality
                "fusion_readout": "both",
                "modality_dropout": 0.3,
                "audio_normalization": "standardize",
                # 128 wide: 2.3x faster to train than 256 on CPU (the cross-attention dominates an epoch on cached
                # features) and still more capacity than EMOPIA's 767 training clips use at 256 (train loss falls
                # while validation loss rises after a few epochs).
                "fusion_hidden_size": 128,
                "fusion_num_heads": 4,
            }
        else:
            raise ValueError(f"unknown preset {name!r}: choose 'paper', 'offline' or 'tiny'")
        fields.update(overrides)
        return cls(**fields)


# The sub-configs resolve through AutoConfig by model type (in remote code too, where this file is all there is).
AutoConfig.register(LogMelConfig.model_type, LogMelConfig, exist_ok=True)
AutoConfig.register(MidiBertConfig.model_type, MidiBertConfig, exist_ok=True)

__all__ = [
    "AUDIO_ENCODER_KINDS",
    "LogMelConfig",
    "MidiBertConfig",
    "PoolingVQConfig",
    "QUADRANT_LABELS",
    "QUADRANT_MEANINGS",
    "audio_encoder_kind",
    "check_field_types",
    "conv_receptive_field",
    "frame_hop",
]
