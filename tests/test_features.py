"""Tests of poolingvq/features.py: keys, atomic cache, resumable sharded extraction, batches, codebook start.

Every MIDI is written by the tests with symusic; one test reads ten real EMOPIA clips from ../shared/data.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from shared_data import DATA_DIR, needs_data
from symusic import Note, Score, Tempo, Track
from torch.utils.data import DataLoader

from poolingvq import features
from poolingvq.configuration_poolingvq import TINY_AUDIO_CONFIG, PoolingVQConfig
from poolingvq.feature_extraction_poolingvq import PoolingVQFeatureExtractor, load_audio
from poolingvq.features import (
    CachedFeatureDataset,
    FeatureCache,
    clip_key,
    codebook_start_keys,
    collate_cached_features,
    default_feature_extractor,
    encoder_fingerprint,
    extract_features,
    init_codebook_from_cache,
    iter_audio_frames,
    midi_token_sequences,
    preprocessing_settings,
)
from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion
from poolingvq.quantization_poolingvq import sample_frames
from poolingvq.synthesis_poolingvq import default_soundfont_path, synthesize_midi
from poolingvq.tokenization_poolingvq import PAD_TOKEN, CPMidiTokenizer

#: Audio is cropped to 2 s: the 3-s clips then all have the same length and share one MERT pass.
CROP_SECONDS = 2.0
#: Cached features are fp16: a value and its recomputation may round one fp16 step apart (2^-10 relative).
FP16 = {"rtol": 2e-3, "atol": 1e-3}


def tiny_model(**overrides) -> PoolingVQForMusicEmotion:
    torch.manual_seed(0)
    overrides.setdefault("max_audio_seconds", CROP_SECONDS)
    return PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny", **overrides)).eval()


def write_midi(path: Path, num_notes: int, first_pitch: int = 60) -> Path:
    """`num_notes` eighth notes at 120 qpm (0.25 s each) of a pattern starting at `first_pitch`."""
    score = Score(480)
    score.tempos.append(Tempo(time=0, qpm=120))
    track = Track(name="piano", program=0)
    for index in range(num_notes):
        pitch = first_pitch + (index * 5) % 24
        track.notes.append(Note(time=index * 240, duration=240, pitch=pitch, velocity=80))
    score.tracks.append(track)
    score.dump_midi(path)
    return path


def make_clips(folder: Path, note_counts: list[int]) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        {
            "id": f"clip{index}",
            "midi_path": str(write_midi(folder / f"clip{index}.mid", count, 48 + 3 * index)),
        }
        for index, count in enumerate(note_counts)
    ]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[dict]:
    """Six clips: three of 3 s (cropped to the same 2 s), two shorter ones, one with its own 44.1 kHz WAV."""
    folder = tmp_path_factory.mktemp("clips")
    result = make_clips(folder, [12, 4, 12, 6, 12])
    wav = folder / "own_audio.wav"
    seconds = np.arange(int(1.2 * 44100)) / 44100
    sf.write(wav, np.stack([np.sin(2 * np.pi * 220 * seconds), np.sin(2 * np.pi * 330 * seconds)], 1), 44100)
    own_midi = write_midi(folder / "own_audio.mid", 5, 64)
    result.append({"id": "own_audio", "midi_path": str(own_midi), "audio_path": str(wav)})
    return result


def features_of_one_clip(model: PoolingVQForMusicEmotion, clip: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoders on one clip alone, from raw inputs: audio [T, D], midi [L, D] (fp32)."""
    extractor = default_feature_extractor(model.config)
    if clip.get("audio_path"):
        waveform = load_audio(clip["audio_path"], max_seconds=CROP_SECONDS)
    else:
        waveform = synthesize_midi(clip["midi_path"], max_seconds=CROP_SECONDS)
    inputs = extractor(waveform, sampling_rate=24000, return_tensors="pt")
    tokens = torch.from_numpy(CPMidiTokenizer()(clip["midi_path"], max_rows=1))
    with torch.inference_mode():
        audio, _ = model.get_audio_features(inputs["input_values"], inputs["attention_mask"])
        midi, midi_mask = model.get_midi_features(tokens)
    return audio[0], midi[0][midi_mask[0]]


def test_keys_follow_the_bytes_the_settings_and_the_encoder_weights(clips, tmp_path):
    model = tiny_model()
    extractor, tokenizer = default_feature_extractor(model.config), CPMidiTokenizer()
    settings = preprocessing_settings(extractor, tokenizer, 1, {})
    fingerprint = encoder_fingerprint(model)
    clip = clips[0]
    key = clip_key(clip, fingerprint, settings)

    # Same bytes under another name and id, the same soundfont under another name: same key.
    copy = tmp_path / "copy.mid"
    copy.write_bytes(Path(clip["midi_path"]).read_bytes())
    assert clip_key({"id": "other", "midi_path": copy}, fingerprint, settings) == key
    soundfont_copy = tmp_path / "renamed.sf2"
    soundfont_copy.write_bytes(Path(default_soundfont_path()).read_bytes())
    same_font = preprocessing_settings(extractor, tokenizer, 1, {"soundfont": soundfont_copy})
    assert clip_key(clip, fingerprint, same_font) == key

    # Other MIDI bytes, other preprocessing: other keys.
    other_midi = write_midi(tmp_path / "other.mid", 12, 49)
    assert clip_key({"id": clip["id"], "midi_path": other_midi}, fingerprint, settings) != key
    other_settings = [
        preprocessing_settings(PoolingVQFeatureExtractor(max_seconds=1.0), tokenizer, 1, {}),
        preprocessing_settings(extractor, CPMidiTokenizer("rescaled"), 1, {}),
        preprocessing_settings(extractor, CPMidiTokenizer(max_length=256), 1, {}),
        preprocessing_settings(extractor, tokenizer, 2, {}),
        preprocessing_settings(extractor, tokenizer, 1, {"sustain_pedal": False}),
    ]
    other_keys = {clip_key(clip, fingerprint, other) for other in other_settings}
    assert key not in other_keys and len(other_keys) == len(other_settings)

    # A clip with its own recording depends on that file's bytes, not on the synthesis settings.
    own = clips[-1]
    assert clip_key(own, fingerprint, settings) == clip_key(own, fingerprint, other_settings[-1])
    changed_audio = tmp_path / "changed.wav"
    sf.write(changed_audio, np.full(24000, 0.1, dtype=np.float32), 24000)
    assert clip_key({**own, "audio_path": changed_audio}, fingerprint, settings) != clip_key(
        own, fingerprint, settings
    )

    # The trained parts do not enter the fingerprint; one encoder weight or the feature selection does.
    retrained = tiny_model()
    with torch.no_grad():
        retrained.quantizer.codebook.add_(1.0)
        retrained.classifier[1].weight.add_(1.0)
    assert encoder_fingerprint(retrained) == fingerprint
    for encoder in ("audio_encoder", "midi_encoder"):
        nudged = tiny_model()
        with torch.no_grad():
            next(getattr(nudged, encoder).parameters()).view(-1)[0] += 1e-3
        assert encoder_fingerprint(nudged) != fingerprint
    assert encoder_fingerprint(tiny_model(audio_feature_layers=[2])) != fingerprint
    assert encoder_fingerprint(tiny_model(midi_feature_layer=1)) != fingerprint


def test_cached_features_are_the_encoders_on_each_clip_and_are_not_recomputed(clips, tmp_path):
    model = tiny_model()
    cache = FeatureCache(tmp_path / "cache")
    result = extract_features(model, clips, cache, batch_size=4)
    assert result.failures == [] and sorted(result.computed) == sorted(clip["id"] for clip in clips)
    assert result.cached_keys == result.keys and sorted(cache.keys()) == sorted(result.keys)
    for clip, key in zip(clips, result.keys, strict=True):
        entry = cache.get(key)
        audio, midi = features_of_one_clip(model, clip)
        assert entry.audio.dtype == entry.midi.dtype == torch.float16
        torch.testing.assert_close(entry.audio.float(), audio, **FP16)
        torch.testing.assert_close(entry.midi.float(), midi, **FP16)
        assert entry.metadata["id"] == clip["id"]
        assert entry.metadata["audio_source"] == ("file" if clip.get("audio_path") else "synthesized")
    # Frames at 75/s: the three cropped clips have 2 s of audio, the 1-s one about half that.
    assert [len(cache.get(key).audio) for key in result.keys[:3]] == [149, 74, 149]

    again = extract_features(model, clips, cache, batch_size=4)
    assert again.computed == [] and again.keys == result.keys


@pytest.mark.parametrize("conv_norm", ["group", "layer"])
def test_batched_extraction_equals_clip_by_clip(clips, tmp_path, conv_norm):
    # "group" (MERT): only clips of equal length share a pass; "layer": clips of any length are padded
    # together.
    model = tiny_model(audio_config={**TINY_AUDIO_CONFIG, "feat_extract_norm": conv_norm})
    batched, one_by_one = FeatureCache(tmp_path / "batched"), FeatureCache(tmp_path / "one")
    keys = extract_features(model, clips, batched, batch_size=len(clips)).keys
    assert extract_features(model, clips, one_by_one, batch_size=1).keys == keys
    for key in keys:
        for name in ("audio", "midi"):
            torch.testing.assert_close(
                batched.get(key).tensors[name].float(), one_by_one.get(key).tensors[name].float(), **FP16
            )


def test_a_damaged_entry_is_detected_deleted_and_recomputed(clips, tmp_path, caplog):
    model = tiny_model()
    cache = FeatureCache(tmp_path / "cache")
    keys = extract_features(model, clips[:3], cache).keys
    path = cache.path(keys[1])
    intact = path.read_bytes()
    features_before = cache.get(keys[1]).tensors

    path.write_bytes(intact[: len(intact) // 2])  # truncated: safetensors' header check fails
    with caplog.at_level(logging.WARNING, logger="poolingvq.features"):
        assert keys[1] not in cache
    assert not path.exists() and "deleted" in caplog.text
    resumed = extract_features(model, clips[:3], cache)
    assert resumed.computed == [clips[1]["id"]]
    recomputed = cache.get(keys[1]).tensors
    for name in ("audio", "midi"):  # alone now, in a batch before: equal up to float rounding
        torch.testing.assert_close(recomputed[name].float(), features_before[name].float(), **FP16)

    damaged = bytearray(intact)
    damaged[-5] ^= 0xFF  # one flipped bit in the data: the header is fine, the CRC-32 is not
    path.write_bytes(bytes(damaged))
    assert keys[1] in cache
    assert cache.get(keys[1]) is None and not path.exists()
    assert cache.get(keys[0]) is not None


def test_an_entry_with_flipped_bytes_is_recomputed_by_the_next_extraction(clips, tmp_path, caplog):
    # Issue 11, failure 2: the header of such an entry is intact, so a header-only check let it through and
    # training died reading it ("no intact cached features"). Extraction now reads each entry it finds in full.
    model = tiny_model()
    cache = FeatureCache(tmp_path / "cache")
    keys = extract_features(model, clips[:2], cache).keys
    path = cache.path(keys[1])
    damaged = bytearray(path.read_bytes())
    damaged[-5] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert keys[1] in cache  # the header check alone cannot see it
    with caplog.at_level(logging.WARNING, logger="poolingvq.features"):
        resumed = extract_features(model, clips[:2], cache)
    assert resumed.computed == [clips[1]["id"]] and "CRC-32" in caplog.text
    dataset = CachedFeatureDataset(cache, resumed.cached_keys)
    assert len(dataset) == 2 and all(dataset[index]["audio_features"].numel() > 0 for index in range(2))


def test_writes_are_atomic_and_temporary_files_of_dead_writers_are_removed(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = "ab" + "0" * 62
    tensors = {"audio": torch.randn(5, 4).half(), "midi": torch.randn(3, 4).half()}

    def failing_rename(source, destination):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(features.os, "replace", failing_rename)
        with pytest.raises(OSError, match="disk full"):
            cache.put(key, tensors, {"id": "x"})
    assert key not in cache and list((tmp_path / "ab").iterdir()) == []

    cache.put(key, tensors, {"id": "x", "frames": 5})
    entry = cache.get(key)
    assert torch.equal(entry.audio, tensors["audio"]) and entry.metadata["frames"] == "5"

    dead_pid = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )
    folder = cache.path(key).parent
    dead = folder / f".{key}.{dead_pid}.k3j.{features._HOST}.tmp"
    alive = folder / f".{key}.{os.getpid()}.x7q.{features._HOST}.tmp"
    old_elsewhere = folder / f".{key}.1.a1b.another-host.tmp"
    new_elsewhere = folder / f".{key}.1.c2d.another-host.tmp"
    for temp in (dead, alive, old_elsewhere, new_elsewhere):
        temp.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old_elsewhere, (two_hours_ago, two_hours_ago))
    assert cache.remove_orphaned_temp_files() == 2
    assert not dead.exists() and not old_elsewhere.exists() and alive.exists() and new_elsewhere.exists()
    assert cache.keys() == [key]


def test_bad_clips_are_reported_not_fatal(clips, tmp_path):
    garbage = tmp_path / "garbage.mid"
    garbage.write_bytes(b"MThd but not really a MIDI file")
    bad = [
        {"id": "garbage", "midi_path": str(garbage)},
        {"id": "missing", "midi_path": str(tmp_path / "missing.mid")},
    ]
    result = extract_features(tiny_model(), [clips[1], *bad, clips[3]], FeatureCache(tmp_path / "cache"))
    assert {failure.clip_id for failure in result.failures} == {"garbage", "missing"}
    assert all("garbage.mid" in f.message or "missing.mid" in f.message for f in result.failures)
    assert result.keys[2] is None and result.cached_keys == [result.keys[0], result.keys[3]]
    assert sorted(result.computed) == [clips[1]["id"], clips[3]["id"]]


class FakeAccelerator:
    """The parts of `accelerate.Accelerator` that extraction uses, for process `index` of `count`."""

    def __init__(self, index: int, count: int) -> None:
        self.process_index, self.num_processes = index, count
        self.is_main_process = index == 0
        self.device = torch.device("cpu")

    def unwrap_model(self, model):
        return model

    def wait_for_everyone(self) -> None:
        pass


def test_processes_extract_disjoint_shards_whatever_the_cache_holds(tmp_path):
    clips = make_clips(tmp_path / "clips", [4, 5, 6, 4, 5])
    model = tiny_model()
    cache = FeatureCache(tmp_path / "cache")
    # The second process runs first: the first one's shard must not depend on what the second one stored.
    second = extract_features(model, clips, cache, accelerator=FakeAccelerator(1, 2), batch_size=2)
    first = extract_features(model, clips, cache, accelerator=FakeAccelerator(0, 2), batch_size=2)
    assert sorted(second.computed) == ["clip1", "clip3"]
    assert sorted(first.computed) == ["clip0", "clip2", "clip4"]
    assert sorted(cache.keys()) == sorted(first.keys)


KILLED_EXTRACTION = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from poolingvq.configuration_poolingvq import PoolingVQConfig
    from poolingvq.features import FeatureCache, extract_features
    from poolingvq.modeling_poolingvq import PoolingVQForMusicEmotion

    clips, cache_folder, crop = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
    torch.manual_seed(0)
    model = PoolingVQForMusicEmotion(PoolingVQConfig.from_preset("tiny", max_audio_seconds=crop)).eval()
    batches = []

    def stall_after_two_batches(ids):
        batches.append(ids)
        print("stored", ids, flush=True)
        if len(batches) == 2:
            time.sleep(600)  # killed here

    cache = FeatureCache(cache_folder)
    extract_features(model, clips, cache, batch_size=2, on_batch_stored=stall_after_two_batches)
    """
)


def test_a_killed_extraction_resumes_without_recomputing_finished_clips(tmp_path):
    clips = make_clips(tmp_path / "clips", [4, 5, 6, 4, 5, 6, 4, 5, 6, 4, 5, 6])
    clips_json, script = tmp_path / "clips.json", tmp_path / "extract.py"
    clips_json.write_text(json.dumps(clips))
    script.write_text(KILLED_EXTRACTION)
    cache = FeatureCache(tmp_path / "cache")
    child = subprocess.Popen(
        [sys.executable, str(script), str(clips_json), str(cache.root), str(CROP_SECONDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(cache.keys()) < 4 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    stdout, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL, f"the extraction ended before it was killed:\n{stderr}"
    finished = cache.keys()
    assert len(finished) == 4, f"{stdout}\n{stderr}"
    # A write cut short by the kill leaves a temporary file named after the dead writer.
    pending = features.clip_key(
        clips[-1],
        encoder_fingerprint(tiny_model()),
        preprocessing_settings(default_feature_extractor(tiny_model().config), CPMidiTokenizer(), 1, {}),
    )
    half_written = cache.root / pending[:2] / f".{pending}.{child.pid}.r4n.{features._HOST}.tmp"
    half_written.parent.mkdir(exist_ok=True)
    half_written.write_bytes(cache.path(finished[0]).read_bytes()[:100])
    before = {key: (cache.path(key).stat().st_ino, cache.path(key).stat().st_mtime_ns) for key in finished}

    resumed = extract_features(tiny_model(), clips, cache, batch_size=2)

    assert resumed.failures == [] and len(resumed.computed) == len(clips) - 4
    assert {
        key for key, clip in zip(resumed.keys, clips, strict=True) if clip["id"] in resumed.computed
    }.isdisjoint(finished)
    after = {key: (cache.path(key).stat().st_ino, cache.path(key).stat().st_mtime_ns) for key in finished}
    assert after == before  # the finished entries were neither rewritten nor touched
    assert sorted(cache.keys()) == sorted(resumed.keys)
    assert list(cache.root.glob("*/.*")) == []
    assert all(cache.get(key) is not None for key in resumed.keys)


def test_collated_cached_features_give_the_raw_input_logits(clips, tmp_path):
    model = tiny_model()
    cache = FeatureCache(tmp_path / "cache")
    keys = extract_features(model, clips, cache, batch_size=3).cached_keys
    labels = [0, 1, 2, 3, 0, 1]
    loader = DataLoader(
        CachedFeatureDataset(cache, keys, labels), batch_size=len(keys), collate_fn=collate_cached_features
    )
    batch = next(iter(loader))
    assert set(batch) == {
        "audio_features",
        "audio_features_mask",
        "midi_features",
        "midi_features_mask",
        "labels",
    }
    assert batch["audio_features"].dtype == torch.float16 and batch["labels"].tolist() == labels
    assert batch["audio_features_mask"].sum(-1).tolist() == [len(cache.get(key).audio) for key in keys]
    with torch.no_grad():
        output = model(**batch)
        assert torch.isfinite(output.loss)
        extractor = default_feature_extractor(model.config)
        for index, clip in enumerate(clips):
            source = clip.get("audio_path") or synthesize_midi(clip["midi_path"], max_seconds=CROP_SECONDS)
            inputs = extractor(source, sampling_rate=24000, return_tensors="pt")
            tokens = torch.from_numpy(CPMidiTokenizer()(clip["midi_path"], max_rows=1))
            raw = model(inputs["input_values"], inputs["attention_mask"], midi_input_ids=tokens).logits
            torch.testing.assert_close(output.logits[index], raw[0], atol=2e-3, rtol=0)


def test_token_batches_carry_the_midi_the_cache_encoded(clips, tmp_path):
    """A run that fine-tunes the MIDI encoder reads each clip's CP tokens beside its cached audio: tokenized as
    extraction tokenizes them (the logits match those of the cached MIDI features), padded with the tokenizer's PAD
    word."""
    model = tiny_model()
    cache = FeatureCache(tmp_path / "cache")
    keys = extract_features(model, clips, cache, batch_size=3).cached_keys
    paths = [clip["midi_path"] for clip in clips]
    tokens = midi_token_sequences([*paths, paths[0]], CPMidiTokenizer(), max_midi_rows=1)
    assert tokens[-1] is tokens[0]  # a MIDI file given twice (a clip's other renderings) is tokenized once
    tokens = tokens[:-1]
    labels = [0, 1, 2, 3, 0, 1]

    def batch_of(**kwargs) -> dict:
        dataset = CachedFeatureDataset(cache, keys, labels, **kwargs)
        return next(iter(DataLoader(dataset, batch_size=len(keys), collate_fn=collate_cached_features)))

    cached, token_batch = batch_of(), batch_of(midi_tokens=tokens)
    assert set(token_batch) == {
        "audio_features",
        "audio_features_mask",
        "midi_input_ids",
        "midi_attention_mask",
        "labels",
    }
    lengths = [len(sequence) for sequence in tokens]
    assert token_batch["midi_attention_mask"].sum(-1).tolist() == lengths
    assert lengths == [len(cache.get(key).midi) for key in keys]
    ids, mask = token_batch["midi_input_ids"], token_batch["midi_attention_mask"]
    assert ids.dtype == torch.long and ids.shape == (len(keys), max(lengths), 4)
    assert (ids[~mask] == torch.tensor(PAD_TOKEN)).all() and (~mask).any()
    for row, sequence in zip(ids, tokens, strict=True):
        assert torch.equal(row[: len(sequence)], sequence)
    assert torch.equal(token_batch["audio_features"], cached["audio_features"])
    with torch.no_grad():
        torch.testing.assert_close(model(**token_batch).logits, model(**cached).logits, atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="6 keys but 5 MIDI token sequences"):
        CachedFeatureDataset(cache, keys, labels, midi_tokens=tokens[:5])


class Recorder:
    """Wraps one of the model's encode methods and keeps what each call returned (per row: the real positions)."""

    def __init__(self, method) -> None:
        self.method, self.rows = method, []

    def __call__(self, *args, **kwargs):
        features, mask = self.method(*args, **kwargs)
        self.rows += [row[row_mask].float().cpu() for row, row_mask in zip(features, mask, strict=True)]
        return features, mask


@pytest.mark.parametrize("kind", ["mert", "logmel"])
def test_the_cache_holds_what_the_pipeline_computes_for_the_same_file(clips, tmp_path, monkeypatch, kind):
    """Training reads what the pipeline computes: for a clip with its own recording, a clip synthesized from its
    MIDI and a shorter one, the features the cache computes (and stores, in fp16) are those the pipeline computes
    for the same files, each alone and all in one batch of clips of unequal lengths."""
    from transformers import pipeline

    from poolingvq.pipeline_music_emotion import MusicEmotionPipeline
    from poolingvq.processing_poolingvq import PoolingVQProcessor

    overrides = {"max_midi_tokens": 8}  # rows of 8 tokens: the 12-note clips' two kept rows are read as two
    if kind == "logmel":  # the offline model's front end: absolute level, chroma, onsets, key profiles
        overrides["audio_config"] = {
            "model_type": "poolingvq_logmel",
            "num_mel_bins": 40,
            "level": "absolute",
            "num_chroma_bins": 12,
            "onset_strength": True,
            "key_profile_seconds": 1.0,
        }
    model = tiny_model(**overrides)
    assert model.config.audio_encoder_kind == kind
    processor = PoolingVQProcessor.for_model(model.config, midi_max_rows=2)
    chosen = [
        clips[-1],
        clips[0],
        clips[1],
    ]  # 1.2 s recorded, 3 s synthesized (cropped to 2 s), ~1 s synthesized
    inputs = [
        {"audio": clip["audio_path"], "midi": clip["midi_path"]}
        if clip.get("audio_path")
        else clip["midi_path"]
        for clip in chosen
    ]

    # the cache, filled as training fills it: all three clips in one batch
    audio_calls, midi_calls = Recorder(model.encode_audio), Recorder(model.encode_midi)
    monkeypatch.setattr(model, "encode_audio", audio_calls)
    monkeypatch.setattr(model, "encode_midi", midi_calls)
    cache = FeatureCache(tmp_path / "cache")
    result = extract_features(
        model,
        chosen,
        cache,
        batch_size=len(chosen),
        feature_extractor=processor.feature_extractor,
        tokenizer=processor.midi_tokenizer,
        max_midi_rows=processor.midi_max_rows,
        synthesis_kwargs={"level": processor.synthesis_level},
    )
    assert result.failures == [] and len(audio_calls.rows) == len(midi_calls.rows) == len(chosen)
    cached_audio, cached_midi = audio_calls.rows, midi_calls.rows
    assert len({len(frames) for frames in cached_audio}) == len(chosen)  # three lengths in one batch
    assert [len(tokens) for tokens in cached_midi] == [5, 12, 4]  # both rows of a 12-note clip

    # the pipeline, on each file alone and on all of them in one batch
    classify = pipeline(
        "music-emotion", model=model, processor=processor, pipeline_class=MusicEmotionPipeline
    )
    runs = {}
    for name, batch_size in (("alone", 1), ("batched", len(chosen))):
        audio_calls.rows, midi_calls.rows = [], []
        classify(inputs, batch_size=batch_size)
        runs[name] = (audio_calls.rows, midi_calls.rows)

    for index, key in enumerate(result.keys):
        entry = cache.get(key)
        for name, (audio, midi) in runs.items():
            message = f"{kind}, clip {chosen[index]['id']}, pipeline {name}"
            torch.testing.assert_close(cached_audio[index], audio[index], atol=1e-5, rtol=0, msg=message)
            torch.testing.assert_close(cached_midi[index], midi[index], atol=1e-5, rtol=0, msg=message)
            # what is stored is the same features rounded to fp16
            torch.testing.assert_close(entry.audio, audio[index].half(), atol=1e-5, rtol=2**-10, msg=message)
            torch.testing.assert_close(entry.midi, midi[index].half(), atol=1e-5, rtol=2**-10, msg=message)


def test_dataset_reports_a_missing_entry_clearly(tmp_path):
    dataset = CachedFeatureDataset(FeatureCache(tmp_path), ["abc123"])
    with pytest.raises(KeyError, match="run extract_features"):
        dataset[0]


def test_codebook_start_uses_a_seeded_half_and_a_bounded_stream(clips, tmp_path, monkeypatch):
    names = [f"{index:064x}" for index in range(10)]
    half = codebook_start_keys(names, 0.5, seed=0)
    assert len(half) == 5 and set(half) <= set(names) and half == sorted(half)
    assert codebook_start_keys(names, 0.5, seed=0) == half
    assert codebook_start_keys(names, 0.5, seed=1) != half
    assert len(codebook_start_keys(names, 0.01)) == 1
    with pytest.raises(ValueError):
        codebook_start_keys(names, 0.0)

    model = tiny_model()
    cache = FeatureCache(tmp_path / "cache")
    keys = extract_features(model, clips, cache, batch_size=3).cached_keys

    reads = []
    real_get = cache.get
    monkeypatch.setattr(cache, "get", lambda key: reads.append(key) or real_get(key))
    stream = iter_audio_frames(cache, keys)
    first = next(stream)
    assert reads == keys[:1], "the stream must read one clip at a time"
    assert first.dtype == torch.float32 and first.shape == (149, 32)
    all_frames = torch.cat([first, *stream])
    sample = sample_frames(iter_audio_frames(cache, keys), 40, torch.Generator().manual_seed(0))
    assert sample.shape == (40, 32)
    assert (sample[:, None] == all_frames[None]).all(-1).any(-1).all()  # every sampled row is a cached frame

    used = init_codebook_from_cache(model, cache, keys, max_frames=60, num_iters=3, seed=0)
    assert used == codebook_start_keys(keys, 0.5, 0)
    assert bool(model.quantizer.initialized) and model.quantizer.codebook.shape == (16, 32)
    assert torch.isfinite(model.quantizer.codebook).all()


@pytest.mark.real_data
@needs_data
def test_real_emopia_clips(tmp_path):
    midis = sorted((DATA_DIR / "emopia" / "midis").glob("*.mid"))[:10]
    clips = [{"id": path.stem, "midi_path": str(path)} for path in midis]
    model = tiny_model(max_audio_seconds=15.0)
    cache = FeatureCache(tmp_path / "cache")
    result = extract_features(model, clips, cache, batch_size=4)
    assert result.failures == [] and len(set(result.keys)) == 10
    tokenizer = CPMidiTokenizer()
    for clip, key in zip(clips, result.keys, strict=True):
        entry = cache.get(key)
        first_row = tokenizer(clip["midi_path"], max_rows=1)[0]
        assert len(entry.midi) == int((first_row[:, 0] != 2).sum())
        assert 75 * 5 < len(entry.audio) <= 75 * 15  # EMOPIA clips last 10 s or more, cropped to 15 s
        assert torch.isfinite(entry.audio.float()).all() and entry.audio.float().std() > 0
