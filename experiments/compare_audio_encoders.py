"""Which download-free audio encoder: the `offline` preset's log-mel front end, or MERT's architecture with random
weights? Measured with a linear probe on EMOPIA (`paper` split, synthesized audio).

    python experiments/compare_audio_encoders.py --data-dir ../shared/data/emopia --cache-dir runs/embedded/features \
        --midi-encoder runs/embedded/midibert-small

Without a download, a MERT-shaped encoder can only have random weights (or weights trained here, which would need
far more audio and compute than we have). Both candidates are frozen, so what matters is how much of the emotion
their frames carry. The probe: each clip -> the mean and standard deviation of its frames -> standardised ->
logistic regression, its C chosen on validation, then test once. The random encoder is MERT's topology (same
convolution kernels and strides, so the same 75 frames/s) narrowed to 128 channels, 4 layers 256 wide, to keep its
extraction affordable on a CPU; it is seeded like every preset's encoders (`ENCODER_SEED`).

Writes `audio_encoder_comparison.json` under `--output-dir` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poolingvq.configuration_poolingvq import MERT_V1_95M_AUDIO_CONFIG, PoolingVQConfig
from poolingvq.features import FeatureCache, extract_features
from poolingvq.midibert_poolingvq import MidiBertModel
from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion
from poolingvq.processing_poolingvq import PoolingVQProcessor
from poolingvq.training import ENCODER_SEED, TrainingArguments, load_split_clips, subset

RANDOM_MERT_SHAPED = {
    **MERT_V1_95M_AUDIO_CONFIG,
    "conv_dim": [128] * 7,
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
}
ENCODERS = {
    "log-mel (offline preset)": {"model_type": "poolingvq_logmel"},
    "MERT-shaped, random weights": RANDOM_MERT_SHAPED,
}


def clip_vectors(
    model: PoolingVQForMusicEmotion, clips: list[dict[str, Any]], cache: FeatureCache
) -> np.ndarray:
    """`[N, 2 D]`: each clip's mean and standard deviation over its audio frames (features cached as in training)."""
    processor = PoolingVQProcessor.for_model(model.config, midi_mode="rescaled")
    result = extract_features(
        model, clips, cache, feature_extractor=processor.feature_extractor, tokenizer=processor.midi_tokenizer
    )
    if result.failures:
        raise RuntimeError(f"could not encode {len(result.failures)} clips: {result.failures[:3]}")
    vectors = []
    for key in result.keys:
        frames = cache.get(key).audio.float()
        vectors.append(torch.cat([frames.mean(0), frames.std(0)]).numpy())
    return np.stack(vectors)


def probe(features: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features["train"])
    scaled = {split: scaler.transform(values) for split, values in features.items()}
    best: dict[str, Any] = {}
    for c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
        classifier = LogisticRegression(C=c, max_iter=5000).fit(scaled["train"], labels["train"])
        scores = {}
        for split in ("validation", "test"):
            predicted = classifier.predict(scaled[split])
            scores[split] = {
                "accuracy": float(accuracy_score(labels[split], predicted)),
                "macro_f1": float(f1_score(labels[split], predicted, average="macro")),
            }
        if not best or scores["validation"]["macro_f1"] > best["validation"]["macro_f1"]:
            best = {"C": c, **scores}
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="the EMOPIA release")
    parser.add_argument("--cache-dir", required=True, help="feature cache (shared with training)")
    parser.add_argument(
        "--train-clips", type=int, default=300, help="training clips for the probe (seeded draw)"
    )
    parser.add_argument(
        "--midi-encoder", required=True, help="the training run's MIDI encoder (pretrain-midi)"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("runs/embedded"))
    args = parser.parse_args(argv)

    clips = load_split_clips(TrainingArguments(dataset="emopia", data_dir=args.data_dir, config="paper"))
    clips["train"] = subset(clips["train"], args.train_clips, seed=0)
    labels = {split: np.array([clip["label"] for clip in items]) for split, items in clips.items()}
    cache = FeatureCache(args.cache_dir)
    midi_encoder = MidiBertModel.from_pretrained(args.midi_encoder)
    results = {}
    for name, audio_config in ENCODERS.items():
        with torch.random.fork_rng():
            torch.manual_seed(ENCODER_SEED)
            config = PoolingVQConfig.from_preset(
                "offline", audio_config=dict(audio_config), midi_config=midi_encoder.config.to_dict()
            )
            model = PoolingVQForMusicEmotion(config).eval()
        # the MIDI encoder plays no part in the probe; the training run's one keeps its cache entries valid
        model.midi_encoder.load_state_dict(midi_encoder.state_dict())
        features = {split: clip_vectors(model, items, cache) for split, items in clips.items()}
        results[name] = {
            "parameters": sum(p.numel() for p in model.audio_encoder.parameters()),
            "frame_size": int(features["train"].shape[1] // 2),
            **probe(features, labels),
        }
        print(name, json.dumps(results[name]), flush=True)
    report = {
        "train_clips": len(clips["train"]),
        "probe": "mean+std of frames, logistic regression",
        **results,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "audio_encoder_comparison.json").write_text(json.dumps(report, indent=2))
    print(
        "| audio encoder | parameters | validation acc / macro-F1 | test acc / macro-F1 |\n| --- | --- | --- | --- |"
    )
    for name, row in results.items():
        print(
            f"| {name} | {row['parameters']:,} | {row['validation']['accuracy']:.3f} / "
            f"{row['validation']['macro_f1']:.3f} | {row['test']['accuracy']:.3f} / {row['test']['macro_f1']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
