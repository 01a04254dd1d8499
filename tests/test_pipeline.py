"""PoolingVQProcessor, pipeline("music-emotion") and `poolingvq predict`, from files to scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import symusic
import torch
from transformers import AutoProcessor, pipeline

import poolingvq
from poolingvq import PoolingVQConfig, PoolingVQForMusicEmotion, PoolingVQInputError, PoolingVQProcessor
from poolingvq.cli import main
from poolingvq.examples import write_example_midi
from poolingvq.predict import load_pipeline


def save_model(folder: Path, **overrides) -> Path:
    torch.manual_seed(0)
    config = PoolingVQConfig.from_preset("tiny", **overrides)
    model = PoolingVQForMusicEmotion(config).eval()
    with torch.no_grad():  # a k-means start, so the codes are spread like a trained model's
        model.quantizer is None or model.quantizer.init_codebook(torch.randn(500, 32), seed=0)
    model.save_pretrained(folder)
    PoolingVQProcessor.for_model(config).save_pretrained(folder)
    return folder


def assert_batching_changes_nothing(classify, inputs: list) -> None:
    """The pipeline gives each input the same scores one by one as in batches of two."""
    one_by_one = [classify(item) for item in inputs]
    batched = classify(inputs, batch_size=2)
    for single, batch in zip(one_by_one, batched, strict=True):
        for a, b in zip(single, batch, strict=True):
            assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-5


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pieces")
    midi = write_example_midi(root / "piece.mid", "Q1", seconds=6)
    other_midi = write_example_midi(root / "other.mid", "Q3", seconds=4)
    rate = 22050
    t = np.arange(int(3.0 * rate)) / rate
    sf.write(root / "piece.wav", 0.3 * np.sin(2 * np.pi * 330 * t), rate)
    sf.write(root / "short.flac", 0.3 * np.sin(2 * np.pi * 220 * t[: rate * 2]), rate)
    return {"midi": midi, "other_midi": other_midi, "wav": root / "piece.wav", "flac": root / "short.flac"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def classify(model_dir):
    pipe, _ = load_pipeline(
        model_dir
    )  # the package's own classes, so errors are poolingvq.PoolingVQInputError
    return pipe


# --- processor ----------------------------------------------------------------------------------------------------


def test_processor_prepares_both_modalities(files):
    processor = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny"))
    batch = processor(
        audio=[str(files["wav"]), str(files["flac"])], midi=[files["midi"], files["other_midi"]]
    )
    assert batch["input_values"].shape == (2, 72000)  # 3 s resampled to 24 kHz, the 2 s clip padded
    assert batch["attention_mask"].sum(-1).tolist() == [72000, 48000]
    tokens, mask = batch["midi_input_ids"], batch["midi_attention_mask"]
    assert tokens.shape[0] == 2 and tokens.shape[2] == 4 and tokens.dtype == torch.int64
    assert mask.shape == tokens.shape[:2] and mask[:, 0].all()
    # trimmed to the longest piece: the longer one fills every position
    assert mask.sum(-1).max() == tokens.shape[1]
    with pytest.raises(ValueError, match="2 audio inputs but 1 MIDI"):
        processor(audio=[str(files["wav"])] * 2, midi=[files["midi"]])


def test_processor_synthesizes_audio_for_midi_only(files):
    processor = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny"))
    batch = processor(midi=files["midi"], synthesize_missing_audio=True)
    assert batch["input_values"].shape[1] > 24000 * 5  # a 6 s piece
    assert torch.isfinite(batch["input_values"]).all()
    assert batch["midi_input_ids"].shape[0] == 1


def test_processor_round_trip_with_auto_processor(tmp_path):
    processor = PoolingVQProcessor.for_model(
        PoolingVQConfig.from_preset("tiny"), midi_mode="rescaled", midi_max_rows=2
    )
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert loaded.midi_mode == "rescaled" and loaded.midi_max_rows == 2
    assert loaded.midi_tokenizer.mode == "rescaled"
    assert loaded.feature_extractor.sampling_rate == 24000 and loaded.feature_extractor.max_seconds == 60.0


def test_processor_gives_performance_statistics_to_a_model_that_reads_them(files, tmp_path):
    from poolingvq.performance_poolingvq import NUM_STATISTICS, performance_statistics

    config = PoolingVQConfig.from_preset("tiny", midi_statistics=True)
    processor = PoolingVQProcessor.for_model(config)
    batch = processor(midi=[files["midi"], files["other_midi"]])
    assert batch["midi_statistics"].shape == (2, NUM_STATISTICS)
    torch.testing.assert_close(
        batch["midi_statistics"][1], torch.from_numpy(performance_statistics(files["other_midi"]))
    )
    assert "midi_statistics" not in PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny"))(
        midi=files["midi"]
    )
    processor.save_pretrained(tmp_path)
    assert AutoProcessor.from_pretrained(tmp_path, trust_remote_code=True).midi_statistics


def test_processor_parses_each_midi_once_for_tokens_and_statistics(files, monkeypatch):
    from poolingvq import tokenization_poolingvq

    parsed = []
    parse = tokenization_poolingvq.parse_midi_bytes
    monkeypatch.setattr(
        tokenization_poolingvq,
        "parse_midi_bytes",
        lambda data, source: parsed.append(source) or parse(data, source),
    )
    processor = PoolingVQProcessor.for_model(PoolingVQConfig.from_preset("tiny", midi_statistics=True))
    batch = processor(midi=[files["midi"], files["other_midi"]])
    assert parsed == [files["midi"], files["other_midi"]]
    assert {"midi_input_ids", "midi_statistics"} <= set(batch)


def test_pipeline_of_a_model_with_midi_statistics_batches_and_takes_either_modality(files, tmp_path):
    folder = save_model(tmp_path / "statistics", midi_statistics=True, modality_dropout=0.3)
    classify, _ = load_pipeline(folder)
    inputs = [
        {"audio": str(files["wav"]), "midi": str(files["midi"])},
        {"midi": str(files["other_midi"])},
        {"audio": str(files["flac"])},
    ]
    assert_batching_changes_nothing(classify, inputs)
    assert classify(inputs[2], return_details=True, transcribe=False)["heard"] == "audio only (no MIDI)"
    # a recording alone first, then pieces with MIDI: a batch of both kinds is run piece by piece, same scores
    mixed = [inputs[2], inputs[1], inputs[0]]
    alone = [classify(item, transcribe=False) for item in mixed]
    assert classify(mixed, batch_size=2, transcribe=False) == alone


# --- pipeline -----------------------------------------------------------------------------------------------------


def test_pipeline_scores_are_a_sorted_distribution(classify, files):
    scores = classify({"audio": str(files["wav"]), "midi": str(files["midi"])})
    assert [s["label"] for s in scores] and sorted(s["label"] for s in scores) == ["Q1", "Q2", "Q3", "Q4"]
    values = [s["score"] for s in scores]
    assert values == sorted(values, reverse=True)
    assert abs(sum(values) - 1) < 1e-5
    top = classify({"audio": str(files["wav"]), "midi": str(files["midi"])}, top_k=2)
    assert top == scores[:2]
    with pytest.raises(ValueError, match="top_k"):
        classify({"midi": str(files["midi"])}, top_k=5)


def test_pipeline_details_describe_the_pooling(classify, files):
    details = classify({"audio": str(files["wav"]), "midi": str(files["midi"])}, return_details=True)
    frames, windows = details["audio_frames"], details["pooled_windows"]
    assert frames == 224  # 3 s at 75 frames/s (MERT's conv stack)
    assert windows == 74  # windows of 5, stride 3: about a third
    assert len(details["codes"]) == frames and all(0 <= c < 16 for c in details["codes"])
    assert len(details["window_rules"]) == windows and set(details["window_rules"]) <= {
        "avg",
        "weighted",
        "max",
    }
    assert details["midi_tokens"] > 10 and details["frame_rate"] == 75.0
    assert abs(sum(s["score"] for s in details["scores"]) - 1) < 1e-5


def test_midi_only_input_synthesizes_audio(classify, files):
    by_path = classify(str(files["midi"]))
    by_dict = classify({"midi": str(files["midi"])})
    assert by_path == by_dict
    details = classify({"midi": str(files["midi"])}, return_details=True)
    assert details["audio_frames"] > 6 * 75 - 10


def test_batched_inputs_give_the_same_scores(classify, files):
    inputs = [
        {"audio": str(files["wav"]), "midi": str(files["midi"])},
        {"audio": str(files["flac"]), "midi": str(files["other_midi"])},
        {"midi": str(files["other_midi"])},
    ]
    assert_batching_changes_nothing(classify, inputs)


def test_lists_tuples_and_empty_lists(classify, files):
    item = {"midi": str(files["other_midi"])}
    assert classify([]) == []
    as_tuple = classify((item, item))
    assert isinstance(as_tuple, list) and len(as_tuple) == 2 and as_tuple[0] == as_tuple[1] == classify(item)


def test_audio_only_needs_a_midi_unless_the_model_is_audio_only(classify, files, tmp_path):
    with pytest.raises(PoolingVQInputError, match="MIDI file is needed") as error:
        classify({"audio": str(files["wav"])}, transcribe=False)
    assert str(files["wav"]) in str(error.value) and "install a transcriber" in str(error.value)
    audio_only, _ = load_pipeline(save_model(tmp_path / "audio", modalities="audio"))
    scores = audio_only({"audio": str(files["wav"])})
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-5


def test_bad_inputs_are_named_and_the_pipeline_keeps_working(classify, files, tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    text_wav = tmp_path / "notes.wav"
    text_wav.write_text("this is not audio")
    truncated = tmp_path / "truncated.mid"
    truncated.write_bytes(files["midi"].read_bytes()[:40])
    drums = symusic.Score(480)
    drum_track = symusic.Track(program=0, is_drum=True)
    drum_track.notes.append(symusic.Note(0, 240, 36, 100))
    drums.tracks.append(drum_track)
    drum_only = tmp_path / "drums.mid"
    drums.dump_midi(str(drum_only))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24000), 24000)
    cases = [
        ({"midi": str(tmp_path / "missing.mid")}, "missing.mid"),
        ({"midi": str(empty)}, "empty.mid"),
        ({"midi": str(truncated)}, "truncated.mid"),
        ({"midi": str(drum_only)}, "drums.mid"),
        ({"audio": str(text_wav), "midi": str(files["midi"])}, "notes.wav"),
        ({"audio": str(silent), "midi": str(files["midi"])}, "silent.wav"),
        (
            {
                "audio": np.full(24000, np.nan, dtype=np.float32),
                "sampling_rate": 24000,
                "midi": str(files["midi"]),
            },
            "",
        ),
        ({"audio": np.zeros(0, dtype=np.float32), "sampling_rate": 24000, "midi": str(files["midi"])}, ""),
        ({"sound": str(files["wav"])}, "unknown keys"),
    ]
    for inputs, named in cases:
        with pytest.raises(PoolingVQInputError, match=named or None):
            classify(inputs)
    scores = classify({"audio": str(files["wav"]), "midi": str(files["midi"])})
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-5


REMOTE_PIPELINE = """
import importlib.abc, json, sys
class NoPoolingVQ(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "poolingvq" or name.startswith("poolingvq."):
            raise ImportError("poolingvq is blocked in this process")
sys.meta_path.insert(0, NoPoolingVQ())
from transformers import pipeline
classify = pipeline("music-emotion", model=sys.argv[1], trust_remote_code=True)
scores = classify({"audio": sys.argv[2], "midi": sys.argv[3]})
midi_only = classify(sys.argv[3], return_details=True)
assert "poolingvq" not in sys.modules
print(json.dumps({"scores": scores, "midi_only": midi_only["scores"], "class": type(classify).__module__}))
"""


def test_pipeline_runs_from_the_folder_without_the_package(model_dir, files, tmp_path, classify):
    script = tmp_path / "remote.py"
    script.write_text(textwrap.dedent(REMOTE_PIPELINE))
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(model_dir), str(files["wav"]), str(files["midi"])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["class"].startswith("transformers_modules")
    local = classify({"audio": str(files["wav"]), "midi": str(files["midi"])})
    # the same folder through trust_remote_code in this process: the folder's own copy of the code runs
    remote_here = pipeline("music-emotion", model=str(model_dir), trust_remote_code=True)
    assert type(remote_here).__module__.startswith("transformers_modules")
    with pytest.raises(ValueError, match="a MIDI file is needed"):  # its error is a ValueError all the same
        remote_here({"audio": str(files["wav"])}, transcribe=False)
    assert [s["label"] for s in remote["scores"]] == [s["label"] for s in local]
    assert np.allclose([s["score"] for s in remote["scores"]], [s["score"] for s in local], atol=1e-6)
    assert {"custom_pipelines", "auto_map"} <= set(json.loads((model_dir / "config.json").read_text()))


# --- poolingvq predict ------------------------------------------------------------------------------------------------


def test_predict_prints_the_four_quadrants(model_dir, files, capsys):
    assert (
        main(
            ["predict", "--model", str(model_dir), "--audio", str(files["wav"]), "--midi", str(files["midi"])]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for quadrant, meaning in poolingvq.QUADRANT_MEANINGS.items():
        assert quadrant in printed and meaning in printed
    assert main(["predict", "--model", str(model_dir), "--midi", str(files["midi"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["scores"]) == 4 and abs(sum(s["score"] for s in result["scores"]) - 1) < 1e-5


def test_predict_names_a_bad_file_without_a_traceback(model_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere.mid"
    assert main(["predict", "--model", str(model_dir), "--midi", str(missing)]) == 2
    assert "nowhere.mid" in capsys.readouterr().err


def test_predict_example_says_when_no_trained_model_is_embedded(capsys):
    assert main(["predict", "--example", "Q4"]) == 0
    printed = capsys.readouterr().out
    if poolingvq.predict.embedded_model_dir() is None:
        assert "UNTRAINED" in printed
    assert "Q4" in printed


def test_a_processor_at_another_rate_than_the_model_is_refused(tmp_path):
    """A 16 kHz processor beside a 24 kHz model would feed every frame at the wrong speed without a word."""
    from poolingvq.feature_extraction_poolingvq import PoolingVQFeatureExtractor

    folder = save_model(tmp_path / "model")
    PoolingVQProcessor(PoolingVQFeatureExtractor(sampling_rate=16000)).save_pretrained(folder)
    with pytest.raises(PoolingVQInputError, match="16000 Hz, but the model's audio encoder reads 24000 Hz"):
        load_pipeline(folder)
