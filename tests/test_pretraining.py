"""Tests of `poolingvq.pretraining`: MIDI-BERT's masking, the objective, the corpus (no evaluation clip in it),
the saved folder and music21's conversion."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_data import DATA_DIR, needs_data

from poolingvq.configuration_poolingvq import TINY_MIDI_CONFIG, MidiBertConfig
from poolingvq.errors_poolingvq import PoolingVQInputError
from poolingvq.midibert_poolingvq import MidiBertModel
from poolingvq.pretraining import (
    MASK_TOKEN,
    LengthBucketBatchSampler,
    MidiBertForMaskedCP,
    PretrainingArguments,
    TokenRows,
    add_pretrain_midi_arguments,
    balanced_selection,
    build_corpus,
    class_loss_weights,
    collate_trimmed,
    emotion_training_pieces,
    evaluate_masked,
    heldout_pieces,
    load_corpus_file,
    mask_cp_tokens,
    masked_cp_loss,
    most_frequent_words,
    pretrain,
    tokenize_pieces,
)
from poolingvq.tokenization_poolingvq import CP_VOCAB_SIZES, PAD_TOKEN, CPMidiTokenizer, load_score


def random_rows(num_rows: int, length: int, seed: int) -> torch.Tensor:
    """long [N, L, 4]: random real words, each row padded after a random number of real tokens (some rows empty)."""
    generator = torch.Generator().manual_seed(seed)
    words = torch.stack(
        [torch.randint(0, real, (num_rows, length), generator=generator) for real in PAD_TOKEN], -1
    )
    lengths = torch.randint(0, length + 1, (num_rows,), generator=generator)
    lengths[0], lengths[1] = length, 1
    padding = torch.arange(length)[None, :] >= lengths[:, None]
    return torch.where(padding[..., None], torch.tensor(PAD_TOKEN), words)


def test_masking_follows_midibert_statistics_and_never_touches_padding() -> None:
    tokens = random_rows(256, 512, seed=0)
    masked = mask_cp_tokens(tokens, torch.Generator().manual_seed(1))
    real = tokens[..., 0] != PAD_TOKEN[0]
    assert torch.equal(masked.attention_mask.bool(), real)
    assert not (masked.chosen & ~real).any(), "a padding token was chosen"
    expected_counts = torch.where(real.sum(-1) > 0, (real.sum(-1) * 0.15).round().clamp(min=1), 0)
    assert torch.equal(masked.chosen.sum(-1), expected_counts.long())
    assert torch.equal(masked.input_ids[~masked.chosen], tokens[~masked.chosen]), "an unchosen token changed"

    chosen_inputs, chosen_targets = masked.input_ids[masked.chosen], tokens[masked.chosen]
    total = len(chosen_targets)
    assert total > 8000
    all_masked = (chosen_inputs == torch.tensor(MASK_TOKEN)).all(-1)
    unchanged = (chosen_inputs == chosen_targets).all(-1)
    randomised = ~all_masked & ~unchanged
    # A random word equals the original in all four classes with probability 1/(2*16*86*64): "unchanged" ~ 10%.
    assert abs(all_masked.float().mean() - 0.8) < 0.02
    assert abs(unchanged.float().mean() - 0.1) < 0.015
    assert abs(randomised.float().mean() - 0.1) < 0.015
    random_words = chosen_inputs[randomised]
    assert (random_words < torch.tensor(PAD_TOKEN)).all(), "a random replacement is not a real word"
    # Random pitches are uniform over the 86 real pitches: each used, none dominating.
    pitch_counts = torch.bincount(random_words[:, 2], minlength=86)
    assert (pitch_counts > 0).sum() > 80 and pitch_counts.max() < 0.05 * len(random_words)
    # The chosen tokens are spread over the whole row, not only its start.
    full_row = masked.chosen[0]
    assert full_row[:256].sum() > 20 and full_row[256:].sum() > 20


def test_masking_is_reproducible_from_the_generator_seed() -> None:
    tokens = random_rows(8, 64, seed=3)
    first = mask_cp_tokens(tokens, torch.Generator().manual_seed(5))
    again = mask_cp_tokens(tokens, torch.Generator().manual_seed(5))
    other = mask_cp_tokens(tokens, torch.Generator().manual_seed(6))
    assert torch.equal(first.input_ids, again.input_ids) and torch.equal(first.chosen, again.chosen)
    assert not torch.equal(first.chosen, other.chosen)


def test_loss_weights_and_loss_match_a_direct_computation() -> None:
    weights = class_loss_weights("vocab")
    assert torch.allclose(weights, torch.tensor(CP_VOCAB_SIZES, dtype=torch.float32) / sum(CP_VOCAB_SIZES))
    assert torch.allclose(class_loss_weights("mean"), torch.full((4,), 0.25))
    tokens = random_rows(4, 32, seed=7)
    chosen = torch.zeros(4, 32, dtype=torch.bool)
    chosen[0, :3] = chosen[1, 0] = True
    logits = [
        torch.randn(4, 32, size, generator=torch.Generator().manual_seed(i))
        for i, size in enumerate(CP_VOCAB_SIZES)
    ]
    loss, class_losses, correct = masked_cp_loss(logits, tokens, chosen, weights)
    positions = [(0, 0), (0, 1), (0, 2), (1, 0)]
    for index in range(4):
        expected = np.mean(
            [-torch.log_softmax(logits[index][b, t], -1)[tokens[b, t, index]].item() for b, t in positions]
        )
        assert class_losses[index].item() == pytest.approx(expected, rel=1e-5)
        hits = sum(int(logits[index][b, t].argmax() == tokens[b, t, index]) for b, t in positions)
        assert int(correct[index]) == hits
    assert loss.item() == pytest.approx(float((class_losses * weights).sum()), rel=1e-6)


def test_trimming_padding_does_not_change_the_outputs_on_real_tokens() -> None:
    torch.manual_seed(0)
    model = MidiBertForMaskedCP(MidiBertConfig(**TINY_MIDI_CONFIG, max_position_embeddings=64)).eval()
    rows = [row for row in random_rows(3, 64, seed=11)]
    rows[0][20:] = torch.tensor(PAD_TOKEN)
    rows[1][7:] = torch.tensor(PAD_TOKEN)
    rows[2][:] = rows[0]
    trimmed = collate_trimmed(rows)
    assert trimmed.shape == (3, 32, 4)  # longest real row (20) rounded up to a multiple of 16
    full = torch.stack(rows)
    with torch.no_grad():
        full_logits = model(full, (full[..., 0] != PAD_TOKEN[0]).long())
        trimmed_logits = model(trimmed, (trimmed[..., 0] != PAD_TOKEN[0]).long())
    for a, b in zip(full_logits, trimmed_logits, strict=True):
        assert torch.allclose(a[0, :20], b[0, :20], atol=1e-5)
        assert torch.allclose(a[1, :7], b[1, :7], atol=1e-5)


def test_length_bucket_sampler_covers_every_row_once_per_epoch() -> None:
    lengths = torch.tensor(np.random.default_rng(0).integers(1, 512, size=1003))
    sampler = LengthBucketBatchSampler(lengths, batch_size=8, seed=1)
    epoch_0 = list(sampler)
    assert len(epoch_0) == len(sampler)
    assert sorted(i for batch in epoch_0 for i in batch) == list(range(1003))
    assert list(sampler) == epoch_0, "same epoch, same order"
    sampler.set_epoch(1)
    assert list(sampler) != epoch_0
    # Within a batch the lengths are close: far less spread than random batches of the same rows.
    spread = np.mean([np.ptp(lengths[batch].numpy()) for batch in epoch_0 if len(batch) > 1])
    assert spread < 100
    evaluation = list(LengthBucketBatchSampler(lengths, batch_size=8, seed=1, shuffle=False))
    assert [i for batch in evaluation for i in batch] == np.argsort(lengths.numpy(), kind="stable").tolist()


def test_cli_flags_are_typed() -> None:
    parser = argparse.ArgumentParser()
    add_pretrain_midi_arguments(parser)
    namespace = parser.parse_args(
        [
            "--no-music21",
            "--max-steps",
            "7",
            "--lr",
            "1e-3",
            "--hidden-size",
            "64",
            "--mixed-precision",
            "bf16",
        ]
    )
    assert namespace.no_music21 is True and namespace.max_steps == 7 and namespace.lr == 1e-3
    assert namespace.hidden_size == 64 and namespace.mixed_precision == "bf16" and namespace.resume is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--loss-weighting", "other"])


# ---------------------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@needs_data
@pytest.mark.parametrize("source", ["emopia", "vgmidi"])
def test_corpus_takes_training_pieces_only(source: str, datasets_cache: Path) -> None:
    from poolingvq.data import EmopiaBuilder, VgmidiBuilder

    pieces, counts = emotion_training_pieces(source, DATA_DIR / source, datasets_cache)
    builder_class = {"emopia": EmopiaBuilder, "vgmidi": VgmidiBuilder}[source]
    builder = builder_class(
        config_name="paper",
        data_dir=str(DATA_DIR / source),
        synthesize_audio=False,
        cache_dir=str(datasets_cache),
    )
    builder.download_and_prepare()
    splits = builder.as_dataset()
    evaluation_ids = set(splits["validation"]["id"]) | set(splits["test"]["id"])
    evaluation_midi = {
        hashlib.sha256(midi).hexdigest() for split in ("validation", "test") for midi in splits[split]["midi"]
    }
    ids = {piece.piece_id for piece in pieces}
    assert len(evaluation_ids) == counts["split_sizes"]["validation"] + counts["split_sizes"]["test"]
    assert ids.isdisjoint(evaluation_ids)
    assert {hashlib.sha256(piece.midi).hexdigest() for piece in pieces}.isdisjoint(evaluation_midi)
    assert ids == set(splits["train"]["id"]) - set(counts["train_pieces_equal_to_evaluation_pieces"])
    assert len(pieces) == {"emopia": 767, "vgmidi": 120}[source]  # the README's paper split sizes


@pytest.fixture(scope="module")
def vgmidi_corpus(datasets_cache: Path) -> tuple[list, CPMidiTokenizer]:
    pieces, _ = emotion_training_pieces("vgmidi", DATA_DIR / "vgmidi", datasets_cache)
    return pieces, CPMidiTokenizer(mode="rescaled", max_length=128)


@needs_data
def test_tokenized_corpus_is_cached_and_counts_notes(vgmidi_corpus: tuple, tmp_path: Path) -> None:
    pieces, tokenizer = vgmidi_corpus
    corpus = tokenize_pieces(pieces[:10], tokenizer, tmp_path)
    notes = sum(len(tokenizer.tokenize_score(load_score(piece.midi))) for piece in pieces[:10])
    assert corpus.counts["vgmidi"]["notes"] == notes == int(corpus.row_lengths.sum())
    assert corpus.tokens.shape[1:] == (128, 4) and len(corpus.row_piece) == len(corpus.tokens)
    assert len(list(tmp_path.glob("tokens-*/tokens.npy"))) == 1
    again = tokenize_pieces(pieces[:10], tokenizer, tmp_path)
    assert np.array_equal(again.tokens, corpus.tokens) and again.pieces == corpus.pieces
    other = tokenize_pieces(pieces[:9], tokenizer, tmp_path)
    assert len(other.pieces) == 9 and len(list(tmp_path.glob("tokens-*"))) == 2
    held = heldout_pieces(corpus, 0.2, seed=0)
    assert held.sum() == 2 and np.array_equal(held, heldout_pieces(corpus, 0.2, seed=0))


@needs_data
def test_loss_decreases_on_real_music(vgmidi_corpus: tuple) -> None:
    pieces, tokenizer = vgmidi_corpus
    corpus = tokenize_pieces(pieces[:12], tokenizer)
    rows = TokenRows(corpus.tokens, np.arange(8))
    batch = collate_trimmed([rows[i] for i in range(len(rows))])
    torch.manual_seed(0)
    model = MidiBertForMaskedCP(MidiBertConfig(**TINY_MIDI_CONFIG, max_position_embeddings=128))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    weights = class_loss_weights("vocab")
    evaluation = mask_cp_tokens(batch, torch.Generator().manual_seed(123))

    def evaluation_loss() -> float:
        model.eval()
        with torch.no_grad():
            logits = model(evaluation.input_ids, evaluation.attention_mask)
        model.train()
        return float(masked_cp_loss(logits, batch, evaluation.chosen, weights)[0])

    before = evaluation_loss()
    for step in range(15):
        masked = mask_cp_tokens(batch, torch.Generator().manual_seed(step))
        loss = masked_cp_loss(model(masked.input_ids, masked.attention_mask), batch, masked.chosen, weights)[
            0
        ]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = evaluation_loss()
    assert after < 0.8 * before, (before, after)


@needs_data
def test_pretrain_writes_a_loadable_folder_that_reproduces_its_metrics_and_resumes(
    datasets_cache: Path, tmp_path: Path
) -> None:
    from accelerate import Accelerator

    arguments = {
        "cache_dir": str(datasets_cache.parent / "pretrain-cache"),
        "vgmidi_dir": str(DATA_DIR / "vgmidi"),
        "no_emopia": True,
        "no_music21": True,
        "batch_size": 8,
        "max_positions": 128,
        "hidden_size": 32,
        "num_layers": 2,
        "num_heads": 2,
        "intermediate_size": 64,
        "cp_embedding_size": 16,
        "heldout_fraction": 0.1,
        "log_every": 0,
    }
    first = PretrainingArguments(output_dir=str(tmp_path / "run"), epochs=1, max_steps=3, **arguments)
    metrics = pretrain(first)
    folder = Path(first.output_dir)
    saved = json.loads((folder / "pretraining_metrics.json").read_text())
    assert (
        saved["steps"] == 3
        and saved["best_epoch"] == 1
        and saved["corpus"]["sources"]["vgmidi"]["pieces"] == 120
    )
    assert set(saved["heldout"]["accuracy_per_class"]) == {"Bar", "Position", "Pitch", "Duration"}
    assert (folder / "README.md").read_text().count("| Pitch |") == 1
    # the encoder's and the heads' weights are readable as a plain open()'s files are (safetensors writes 0600)
    umask = os.umask(0)
    os.umask(umask)
    for weights in ("model.safetensors", "mlm_heads.safetensors"):
        assert stat.S_IMODE((folder / weights).stat().st_mode) == 0o666 & ~umask, weights

    # The encoder folder loads on its own; encoder + heads reproduce the held-out metrics written at training time.
    encoder = MidiBertModel.from_pretrained(folder).eval()
    model = MidiBertForMaskedCP.load(folder).eval()
    tokens = torch.tensor(
        np.load(next((datasets_cache.parent / "pretrain-cache").glob("tokens-*/tokens.npy")))[:2]
    )
    with torch.no_grad():
        assert torch.allclose(encoder(tokens).last_hidden_state, model.midibert(tokens).last_hidden_state)
    corpus = build_corpus(first, Path(first.cache_dir))
    heldout_rows = TokenRows(
        corpus.tokens, np.flatnonzero(heldout_pieces(corpus, 0.1, first.seed)[corpus.row_piece])
    )
    train_rows = TokenRows(
        corpus.tokens, np.flatnonzero(~heldout_pieces(corpus, 0.1, first.seed)[corpus.row_piece])
    )
    loader = torch.utils.data.DataLoader(
        heldout_rows,
        batch_sampler=LengthBucketBatchSampler(heldout_rows.lengths, 8, first.seed, shuffle=False),
        collate_fn=collate_trimmed,
    )
    again = evaluate_masked(
        model,
        loader,
        Accelerator(),
        class_loss_weights("vocab"),
        most_frequent_words(train_rows.tokens.numpy()),
        0.15,
        first.seed,
    )
    assert again["loss"] == pytest.approx(metrics["heldout"]["loss"], rel=1e-5)
    assert again["accuracy_per_class"] == pytest.approx(metrics["heldout"]["accuracy_per_class"])
    assert again["baseline_accuracy_per_class"] == pytest.approx(
        metrics["heldout"]["baseline_accuracy_per_class"]
    )

    # --resume continues from the epoch checkpoint: the first epoch is kept as it was, a second one is added.
    second = PretrainingArguments(
        output_dir=first.output_dir, epochs=2, max_steps=5, resume=True, **arguments
    )
    resumed = pretrain(second)
    assert resumed["steps"] == 5 and resumed["epochs_run"] == 2
    assert resumed["history"][0] == metrics["history"][0]
    assert (folder / "checkpoints" / "epoch_0002").is_dir()


# ---------------------------------------------------------------------------------------------------------- music21


def test_music21_works_convert_to_midi_and_tokenize(tmp_path: Path) -> None:
    pytest.importorskip("music21")
    from music21 import converter

    from poolingvq.pretraining import convert_music21_file, music21_corpus_files

    files = music21_corpus_files()
    assert not any(relative.endswith(".rntxt") for relative, _ in files)
    first_collections = [relative.split("/")[0] for relative, _ in files[:20]]
    assert len(set(first_collections)) == 20, "collections are interleaved"
    paths = dict(files)
    tokenizer = CPMidiTokenizer(mode="rescaled")
    for relative in ("bach/bwv66.6.mxl", "ryansMammoth/7thRegimentReel.abc"):
        index = convert_music21_file(str(paths[relative]), str(tmp_path / relative))
        assert index == {"works": ["0000.mid"], "failed": 0}
        assert json.loads((tmp_path / relative / "index.json").read_text()) == index
        tokens = tokenizer((tmp_path / relative / "0000.mid").read_bytes())
        real = tokens[tokens[..., 0] != PAD_TOKEN[0]]
        score = converter.parse(paths[relative])
        pitches = {pitch.midi for element in score.flatten().notes for pitch in element.pitches}
        assert set((real[:, 2] + 22).tolist()) == pitches
        notes = sum(len(element.pitches) for element in score.stripTies().flatten().notes)
        assert len(real) >= notes  # repeats are written out, never a note lost


def test_balanced_selection_draws_round_robin_over_collections() -> None:
    works = [("folk/opus.abc", f"{i:04d}.mid") for i in range(10)]
    works += [("bach/a.mxl", "0000.mid"), ("bach/b.mxl", "0000.mid"), ("zelter/c.xml", "0000.mid")]
    assert balanced_selection(works, None) == works
    assert balanced_selection(works, 100) == works
    assert balanced_selection(works, 5) == [
        ("bach/a.mxl", "0000.mid"),
        ("folk/opus.abc", "0000.mid"),
        ("zelter/c.xml", "0000.mid"),
        ("bach/b.mxl", "0000.mid"),
        ("folk/opus.abc", "0001.mid"),
    ]


# ---------------------------------------------------------------------------------------------------------- resume


def write_piano_corpus(folder: Path, pieces: int) -> Path:
    """`pieces` short MIDI pieces under `folder/written/` (a `--piano-corpus-dir` of one source)."""
    from symusic import Note, Score, Track

    (folder / "written").mkdir(parents=True)
    for number in range(pieces):
        track = Track(name="piano", program=0)
        for index in range(24):
            pitch = 48 + (7 * number + 5 * index) % 24
            track.notes.append(Note(time=240 * index, duration=240, pitch=pitch, velocity=80))
        score = Score(480)
        score.tracks.append(track)
        score.dump_midi(folder / "written" / f"piece_{number:02d}.mid")
    return folder


def written_corpus_arguments(tmp_path: Path, output: str, **overrides) -> PretrainingArguments:
    """A tiny MIDI-BERT on 13 written pieces (12 train, 1 held out), two rows a step: 6 steps an epoch. Without
    dropout: its noise comes from the global RNG, which a resumed run restores as the checkpoint saved it, but the
    new data-loader iterator of the resumed epoch then draws from it once more than an uninterrupted run does."""
    fields = {
        "output_dir": str(tmp_path / output),
        "cache_dir": str(tmp_path / "cache"),
        "piano_corpus_dir": str(tmp_path / "corpus"),
        "no_emopia": True,
        "no_vgmidi": True,
        "no_music21": True,
        "epochs": 2,
        "batch_size": 2,
        "max_positions": 32,
        "hidden_size": 16,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 32,
        "cp_embedding_size": 8,
        "heldout_fraction": 0.05,
        "log_every": 0,
        "dropout": 0.0,
    }
    return PretrainingArguments(**{**fields, **overrides})


class Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


def test_a_run_killed_mid_epoch_resumes_from_its_step_checkpoint_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--save-every-steps`: checkpoints within an epoch (`epoch_<done>_step_<step>`, beside the epoch ones and
    pruned with them); `--resume` from one skips the batches of the epoch already trained on and ends where an
    uninterrupted run ends: same held-out results, same weights."""
    import poolingvq.pretraining as pretraining

    write_piano_corpus(tmp_path / "corpus", pieces=13)
    uninterrupted = pretrain(written_corpus_arguments(tmp_path, "uninterrupted", save_every_steps=4))
    assert uninterrupted["steps"] == 12 and uninterrupted["epochs_run"] == 2
    checkpoints = tmp_path / "uninterrupted" / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["epoch_0001_step_00000012", "epoch_0002"]

    save_as_is = pretraining.save_checkpoint

    def save_then_die(accelerator, checkpoint: Path, *args, **kwargs) -> None:
        save_as_is(accelerator, checkpoint, *args, **kwargs)
        if checkpoint.name == "epoch_0001_step_00000008":  # 2 steps into the second epoch
            raise Killed

    monkeypatch.setattr(pretraining, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        pretrain(written_corpus_arguments(tmp_path, "killed", save_every_steps=4))
    killed = tmp_path / "killed"
    assert sorted(path.name for path in (killed / "checkpoints").iterdir()) == [
        "epoch_0001",
        "epoch_0001_step_00000008",
    ]
    monkeypatch.setattr(pretraining, "save_checkpoint", save_as_is)
    resumed = pretrain(written_corpus_arguments(tmp_path, "killed", save_every_steps=4, resume=True))
    assert resumed["steps"] == 12 and resumed["best_epoch"] == uninterrupted["best_epoch"]
    assert resumed["history"][0] == uninterrupted["history"][0]
    second, expected = resumed["history"][1], uninterrupted["history"][1]
    assert second["heldout"] == expected["heldout"] and second["step"] == expected["step"] == 12
    assert (
        second["train"]["steps"] == 4
    )  # a resumed epoch's training figures cover the steps taken after resuming
    for name, tensor in MidiBertForMaskedCP.load(tmp_path / "uninterrupted").state_dict().items():
        assert torch.equal(MidiBertForMaskedCP.load(killed).state_dict()[name], tensor), name


# ---------------------------------------------------------------------------------------------------------- corpus file


def test_an_exported_corpus_trains_without_the_midi_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--export-corpus` writes the corpus as one small file; `--corpus-file` trains on it where the MIDI files are
    not (a rented GPU): the same rows, pieces, key, hold-out and model as a run that builds the corpus itself."""
    import shutil

    from poolingvq.cli import main as cli

    write_piano_corpus(tmp_path / "corpus", pieces=13)
    exported = tmp_path / "corpus.npz"
    args = written_corpus_arguments(tmp_path, "built")
    flags = ["pretrain-midi", "--piano-corpus-dir", args.piano_corpus_dir, "--cache-dir", args.cache_dir]
    flags += ["--max-positions", "32"]
    assert cli([*flags, "--no-emopia", "--no-vgmidi", "--no-music21", "--export-corpus", str(exported)]) == 0
    assert (
        "13 pieces" in capsys.readouterr().out and not (tmp_path / "built").exists()
    )  # exported, not trained

    built = build_corpus(args, Path(args.cache_dir))
    loaded = load_corpus_file(exported)
    assert loaded.tokens.dtype == built.tokens.dtype == np.int64 and np.array_equal(
        loaded.tokens, built.tokens
    )
    assert np.array_equal(loaded.row_piece, built.row_piece) and loaded.row_piece.dtype == np.int64
    assert (loaded.pieces, loaded.counts, loaded.key) == (built.pieces, built.counts, built.key)

    from_sources = pretrain(args)
    shutil.rmtree(tmp_path / "corpus")  # the MIDI files are gone: only the exported file is left
    from_file = pretrain(
        written_corpus_arguments(tmp_path, "from_file", piano_corpus_dir=None, corpus_file=str(exported))
    )
    assert from_file["corpus"]["key"] == from_sources["corpus"]["key"]
    assert from_file["history"] == from_sources["history"]
    with pytest.raises(PoolingVQInputError, match="rows hold 32 tokens, --max-positions is 64"):
        pretrain(written_corpus_arguments(tmp_path, "longer", corpus_file=str(exported), max_positions=64))


def test_a_file_that_is_not_an_exported_corpus_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "other.npz", tokens=np.zeros(3))
    for name in ("notes.npz", "other.npz", "missing.npz"):
        with pytest.raises(PoolingVQInputError, match="not a corpus written by --export-corpus"):
            load_corpus_file(tmp_path / name)
