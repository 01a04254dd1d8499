"""Tests of poolingvq/feature_extraction_poolingvq.py: `load_audio` and `PoolingVQFeatureExtractor`.

Every input is written by the test itself (soundfile writes WAV / FLAC / OGG).
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import Wav2Vec2FeatureExtractor

from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.feature_extraction_poolingvq import PoolingVQFeatureExtractor, load_audio

TARGET_RATE = 24000


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """float32 [T] sine wave."""
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(round(seconds * rate)) / rate)).astype(
        np.float32
    )


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    """Frequency (Hz) of the largest FFT bin of a Hann-windowed waveform."""
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[np.argmax(spectrum)])


def write(path: Path, samples: np.ndarray, rate: int, **kwargs) -> Path:
    sf.write(path, samples, rate, **kwargs)
    return path


# ----------------------------------------------------------------------------------------------- errors


def test_missing_path_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing_here.wav"
    with pytest.raises(PoolingVQInputError, match="nothing_here.wav: no such file"):
        load_audio(missing)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.touch()
    with pytest.raises(PoolingVQInputError, match="empty"):
        load_audio(empty)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(PoolingVQInputError, match="not a file"):
        load_audio(tmp_path)


@pytest.mark.parametrize(
    "content", [b"this is a text file, not audio\n", b"MThd\x00\x00\x00\x06" + bytes(40)]
)
def test_not_audio(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "fake.wav"
    fake.write_bytes(content)
    with pytest.raises(PoolingVQInputError, match="fake.wav: not audio that libsndfile can read"):
        load_audio(fake)
    with pytest.raises(PoolingVQInputError, match="not audio"):
        load_audio(content)


def test_zero_length_audio(tmp_path: Path) -> None:
    path = write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(PoolingVQInputError, match="zero length"):
        load_audio(path)
    with pytest.raises(PoolingVQInputError, match="zero length"):
        load_audio(np.zeros(0, np.float32), 16000)
    with pytest.raises(PoolingVQInputError, match="zero length"):
        load_audio(np.zeros((2, 0), np.float32), 16000)


def test_silent_audio_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(PoolingVQInputError, match="silence.wav: the first 60 s of the audio are silent"):
        load_audio(path)
    waveform = load_audio(path, reject_silence=False)
    assert waveform.shape == (TARGET_RATE,) and not waveform.any()
    # Quiet but real music (-80 dBFS) is not silence.
    assert load_audio(sine(440, 1, 16000, amplitude=1e-4), 16000).shape == (TARGET_RATE,)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad_value: float) -> None:
    samples = sine(440, 0.5, 16000)
    samples[100] = bad_value
    path = write(tmp_path / "bad.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(PoolingVQInputError, match="NaN or infinite"):
        load_audio(path)
    with pytest.raises(PoolingVQInputError, match="NaN or infinite"):
        load_audio(torch.from_numpy(samples), 16000)


@pytest.mark.parametrize("rate", [500, 999, 384_001, 1_000_000])
def test_absurd_sampling_rates(tmp_path: Path, rate: int) -> None:
    with pytest.raises(PoolingVQInputError, match="outside"):
        load_audio(np.ones(4000, np.float32), rate)
    if rate <= 384_001:  # libsndfile writes these headers; the loader must refuse them
        path = write(tmp_path / "odd_rate.wav", sine(100, 1, rate), rate)
        with pytest.raises(PoolingVQInputError, match="odd_rate.wav: sampling rate .* outside"):
            load_audio(path)


def test_bad_arguments() -> None:
    samples = sine(440, 0.1, 16000)
    with pytest.raises(PoolingVQInputError, match="needs its sampling_rate"):
        load_audio(samples)
    with pytest.raises(PoolingVQInputError, match="integer"):
        load_audio(samples, 16000.5)
    with pytest.raises(PoolingVQInputError, match="max_seconds"):
        load_audio(samples, 16000, max_seconds=0)
    with pytest.raises(PoolingVQInputError, match="dimensions"):
        load_audio(samples.reshape(1, 1, -1), 16000)
    with pytest.raises(PoolingVQInputError, match="not audio"):
        load_audio(samples > 0, 16000)
    with pytest.raises(PoolingVQInputError, match="must be a path"):
        load_audio(12345)


def test_absurd_channel_counts(tmp_path: Path) -> None:
    # A [B, T] batch of 16 clips passed as one array must not be mixed into a single clip.
    with pytest.raises(PoolingVQInputError, match="at most 8 channels"):
        load_audio(np.random.default_rng(0).standard_normal((16, 8000)).astype(np.float32), 8000)
    path = write(tmp_path / "many.wav", np.full((800, 100), 0.1, np.float32), 8000)
    with pytest.raises(PoolingVQInputError, match="many.wav: 100 channels"):
        load_audio(path)


# ------------------------------------------------------------------------------------------ file formats


@pytest.mark.parametrize(
    ("suffix", "subtype", "tolerance"),
    [
        ("wav", "PCM_U8", 1 / 64),
        ("wav", "PCM_16", 1e-3),
        ("wav", "PCM_24", 1e-3),
        ("wav", "FLOAT", 1e-3),
        ("flac", "PCM_16", 1e-3),
        ("ogg", "VORBIS", 0.05),
    ],
)
def test_formats_and_sample_types(tmp_path: Path, suffix: str, subtype: str, tolerance: float) -> None:
    path = write(
        tmp_path / f"tone_{subtype}.{suffix}", sine(440, 1.0, TARGET_RATE), TARGET_RATE, subtype=subtype
    )
    waveform = load_audio(path)
    assert waveform.dtype == np.float32 and waveform.shape == (TARGET_RATE,)
    assert dominant_frequency(waveform, TARGET_RATE) == pytest.approx(440, abs=2)
    assert np.abs(waveform).max() == pytest.approx(0.5, abs=tolerance)


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3 support")
def test_mp3(tmp_path: Path) -> None:
    path = write(tmp_path / "tone.mp3", sine(440, 1.0, TARGET_RATE), TARGET_RATE, format="MP3")
    waveform = load_audio(path)
    assert abs(len(waveform) - TARGET_RATE) <= 0.05 * TARGET_RATE
    assert dominant_frequency(waveform, TARGET_RATE) == pytest.approx(440, abs=2)


def test_six_channels_are_averaged(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    channels = (0.1 * rng.standard_normal((TARGET_RATE // 2, 6))).astype(np.float32)
    path = write(tmp_path / "surround.wav", channels, TARGET_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), channels.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 96000])
def test_resampling_keeps_length_and_pitch(tmp_path: Path, rate: int) -> None:
    path = write(tmp_path / f"tone_{rate}.wav", sine(440, 2.0, rate), rate, subtype="PCM_16")
    waveform = load_audio(path)
    assert len(waveform) == pytest.approx(2.0 * TARGET_RATE, abs=1)
    assert dominant_frequency(waveform, TARGET_RATE) == pytest.approx(440, abs=1)
    assert np.abs(waveform).max() == pytest.approx(0.5, abs=0.01)


def test_crop_keeps_the_start(tmp_path: Path) -> None:
    first_second, rest = sine(440, 1.0, 16000), sine(880, 2.0, 16000)
    path = write(tmp_path / "two_tones.wav", np.concatenate([first_second, rest]), 16000)
    waveform = load_audio(path, max_seconds=1.0)
    assert len(waveform) == TARGET_RATE
    assert dominant_frequency(waveform, TARGET_RATE) == pytest.approx(440, abs=2)
    assert len(load_audio(path, max_seconds=None)) == 3 * TARGET_RATE
    assert len(load_audio(np.concatenate([first_second, rest]), 16000, max_seconds=1.0)) == TARGET_RATE


def test_one_hour_file_costs_no_more_memory_than_its_first_minute(tmp_path: Path) -> None:
    rate, hours = 8000, 1
    path = tmp_path / "one_hour.wav"
    second_of_tone = (sine(440, 1.0, rate) * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as file:  # 57.6 MB on disk, written a second at a time
        for _ in range(3600 * hours):
            file.write(second_of_tone)
    decoded_bytes = 3600 * hours * rate * np.dtype(np.float32).itemsize  # 115 MB as float32

    tracemalloc.start()
    try:
        waveform = load_audio(path, max_seconds=60.0)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert waveform.shape == (60 * TARGET_RATE,)
    # Reading the first minute traces ~4 MB; reading the whole file traces 115 MB.
    assert peak_bytes < decoded_bytes / 10, f"peak {peak_bytes / 1e6:.1f} MB"


# --------------------------------------------------------------------------------------- in-memory inputs


@pytest.mark.parametrize(("format_", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_24")])
def test_bytes_input_equals_path_input(tmp_path: Path, format_: str, subtype: str) -> None:
    path = write(
        tmp_path / f"tone.{format_.lower()}", sine(330, 0.5, 44100), 44100, format=format_, subtype=subtype
    )
    from_bytes = load_audio(path.read_bytes())
    np.testing.assert_array_equal(from_bytes, load_audio(path))
    np.testing.assert_array_equal(load_audio(bytearray(path.read_bytes())), from_bytes)
    with open(path, "rb") as file:
        np.testing.assert_array_equal(load_audio(file), from_bytes)
    with pytest.raises(PoolingVQInputError, match="<0 bytes>: the audio bytes are empty"):
        load_audio(b"")


def test_channel_layouts_and_tensors_agree() -> None:
    rng = np.random.default_rng(1)
    stereo = (0.2 * rng.standard_normal((2, 12000))).astype(np.float32)  # [C, T]
    expected = load_audio(stereo.mean(axis=0), 16000)
    np.testing.assert_allclose(load_audio(stereo, 16000), expected, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo.T, 16000), expected, atol=1e-6)  # [T, C]
    np.testing.assert_allclose(load_audio(np.asfortranarray(stereo.T), 16000), expected, atol=1e-6)
    tensor = torch.from_numpy(stereo).requires_grad_(True)
    np.testing.assert_allclose(load_audio(tensor, 16000), expected, atol=1e-6)
    np.testing.assert_allclose(load_audio(tensor.T.double(), 16000), expected, atol=1e-6)
    assert len(load_audio(tensor.to(torch.bfloat16), 16000)) == len(expected)
    at_target = load_audio(torch.from_numpy(stereo[0]), TARGET_RATE)
    np.testing.assert_array_equal(at_target, stereo[0])  # no resampling at the target rate


def test_integer_arrays_are_scaled_like_pcm() -> None:
    tone = sine(440, 0.5, TARGET_RATE)
    as_int16 = np.round(tone * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(as_int16, TARGET_RATE), tone, atol=1e-4)
    np.testing.assert_allclose(load_audio(torch.from_numpy(as_int16), TARGET_RATE), tone, atol=1e-4)
    as_uint8 = np.round(tone * 127 + 128).astype(np.uint8)
    np.testing.assert_allclose(load_audio(as_uint8, TARGET_RATE), tone, atol=1 / 64)


# ------------------------------------------------------------------------------------ feature extractor


def random_clips(lengths: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(n) + rng.uniform(-0.2, 0.2)).astype(np.float32) for n in lengths]


def test_normalisation_matches_wav2vec2_feature_extractor() -> None:
    clips = random_clips((24000, 7001, 30000, 12345))
    ours = PoolingVQFeatureExtractor()(clips, sampling_rate=TARGET_RATE, return_tensors="np")
    reference = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=TARGET_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )(clips, sampling_rate=TARGET_RATE, padding=True, return_tensors="np")
    np.testing.assert_array_equal(ours["attention_mask"], reference["attention_mask"])
    np.testing.assert_allclose(ours["input_values"], reference["input_values"], atol=1e-5)


def test_padding_attention_mask_and_statistics() -> None:
    lengths = (24000, 6000, 15000)
    batch = PoolingVQFeatureExtractor()(random_clips(lengths), sampling_rate=TARGET_RATE, return_tensors="pt")
    values, mask = batch["input_values"], batch["attention_mask"]
    assert values.shape == mask.shape == (3, 24000)
    assert values.dtype == torch.float32 and mask.dtype == torch.int32
    assert mask.sum(dim=1).tolist() == list(lengths)
    for row, length in enumerate(lengths):
        assert mask[row, :length].all() and not mask[row, length:].any()
        assert not values[row, length:].any()
        assert values[row, :length].mean().item() == pytest.approx(0, abs=1e-4)
        assert values[row, :length].std(correction=0).item() == pytest.approx(1, abs=1e-3)


def test_padding_options() -> None:
    extractor = PoolingVQFeatureExtractor()
    clips = random_clips((1000, 1500))
    assert extractor(clips, sampling_rate=TARGET_RATE, pad_to_multiple_of=320)["input_values"].shape == (
        2,
        1600,
    )
    padded = extractor(clips, sampling_rate=TARGET_RATE, padding="max_length", max_length=2000)
    assert padded["input_values"].shape == (2, 2000)
    with pytest.raises(ValueError, match="differ in length"):
        extractor(clips, sampling_rate=TARGET_RATE, padding=False)
    with pytest.raises(ValueError, match="more than max_length"):
        extractor(clips, sampling_rate=TARGET_RATE, padding="max_length", max_length=1200)
    assert "attention_mask" not in extractor(clips, sampling_rate=TARGET_RATE, return_attention_mask=False)
    left = PoolingVQFeatureExtractor(padding_side="left")(clips, sampling_rate=TARGET_RATE)
    assert left["attention_mask"][0, :500].sum() == 0 and left["attention_mask"][0, 500:].all()


def test_constant_and_silent_clips_give_zeros_not_nan() -> None:
    extractor = PoolingVQFeatureExtractor(reject_silence=False)
    batch = extractor([np.zeros(4000, np.float32), np.full(3000, 0.5, np.float32)], sampling_rate=TARGET_RATE)
    assert np.isfinite(batch["input_values"]).all()
    assert not batch["input_values"].any()
    with pytest.raises(PoolingVQInputError, match="silent"):
        PoolingVQFeatureExtractor()(np.zeros(4000, np.float32), sampling_rate=TARGET_RATE)


def test_mixed_sources_in_one_batch(tmp_path: Path) -> None:
    path = write(tmp_path / "a.flac", sine(440, 1.0, 44100), 44100)
    buffer = io.BytesIO()
    sf.write(buffer, sine(220, 0.5, 8000), 8000, format="WAV")
    stereo = np.stack([sine(330, 0.25, 16000)] * 2)  # ONE [C, T] clip, not a batch of two
    batch = PoolingVQFeatureExtractor()(
        [path, buffer.getvalue(), stereo, torch.from_numpy(sine(550, 0.1, 16000))], sampling_rate=16000
    )
    assert batch["attention_mask"].sum(axis=1).tolist() == [24000, 12000, 6000, 2400]
    single = PoolingVQFeatureExtractor()(stereo, sampling_rate=16000)
    assert single["input_values"].shape == (1, 6000)


def test_max_seconds_crops_each_clip() -> None:
    batch = PoolingVQFeatureExtractor(max_seconds=0.5)(random_clips((24000, 6000)), sampling_rate=TARGET_RATE)
    assert batch["attention_mask"].sum(axis=1).tolist() == [12000, 6000]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    extractor = PoolingVQFeatureExtractor(max_seconds=30.0, reject_silence=False)
    extractor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded = PoolingVQFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    assert (loaded.sampling_rate, loaded.max_seconds, loaded.reject_silence) == (24000, 30.0, False)
    assert PoolingVQFeatureExtractor.model_input_names == ["input_values", "attention_mask"]
    clips = random_clips((5000, 800))
    np.testing.assert_array_equal(
        loaded(clips, sampling_rate=TARGET_RATE)["input_values"],
        extractor(clips, sampling_rate=TARGET_RATE)["input_values"],
    )
