"""Measure a trained model as its users meet it: through `pipeline("music-emotion")`, on EMOPIA's test files.

    python experiments/listen_to_model.py --model RUN_OR_FOLDER --data-dir ../shared/data/emopia \
        --heldout-soundfont /usr/share/sounds/sf2/MuseScore_General_Full.sf2 --out listening.json

Writes one JSON file with:
- `pipeline_midi`: accuracy, macro-F1, per-class F1 and confusion matrix when each test clip is given as its MIDI
  file alone (the pipeline synthesizes the audio, as `predict --midi` and the Space do);
- `audio_only_heldout_soundfont`: the same when each clip is given as audio ALONE, rendered with a piano sound the
  model never trained on (a stand-in for a real recording), at the performance's own level, read as audio alone
  (`transcribe=False`);
- `transcribed_heldout_soundfont`: the same recordings with their notes transcribed by the pipeline (basic-pitch;
  its default where basic-pitch is installed; left out where it is not);
- `cue_responses`: how the answers move when the same test pieces are played faster, slower, louder, softer or
  transposed (`poolingvq.listening.cue_responses`).
The split is `paper` (split_cls, 86 test clips); `--split validation` measures the validation clips instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="a model folder (default: the embedded model)")
    parser.add_argument("--data-dir", required=True, help="the EMOPIA release (midis/, split_cls/)")
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--heldout-soundfont", required=True, help=".sf2 never used in training")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--max-clips", type=int, default=None, help="only the first N clips (smoke tests)")
    parser.add_argument("--skip-cues", action="store_true", help="leave out the cue responses")
    args = parser.parse_args(argv)

    from transformers import pipeline

    import poolingvq  # noqa: F401  (registers the task)
    from poolingvq.data.prepare import split_clips
    from poolingvq.listening import cue_responses
    from poolingvq.synthesis_poolingvq import synthesize_midi
    from poolingvq.training import classification_metrics
    from poolingvq.transcription_poolingvq import TRANSCRIBER, transcription_available

    split = split_clips("emopia", "paper", data_dir=args.data_dir)[args.split]
    clips = [(Path(clip["midi_path"]), clip["label"]) for clip in split][: args.max_clips]
    classify = pipeline(
        "music-emotion", **({"model": args.model, "trust_remote_code": True} if args.model else {})
    )
    labels = list(classify.model.config.id2label.values())
    truth = [label for _, label in clips]
    results: dict[str, object] = {"model": args.model or "embedded", "split": args.split, "clips": len(clips)}

    started = time.monotonic()
    answers = [classify(str(path), top_k=1)[0]["label"] for path, _ in clips]
    results["pipeline_midi"] = classification_metrics(truth, [labels.index(a) for a in answers])
    print(
        f"MIDI through the pipeline: {results['pipeline_midi']['accuracy']:.3f} ({time.monotonic() - started:.0f} s)"
    )

    rate = classify.processor.sampling_rate
    started = time.monotonic()
    transcribing = transcription_available()
    audio_answers, transcribed_answers = [], []
    for path, _ in clips:
        waveform = synthesize_midi(
            path, sample_rate=rate, soundfont=args.heldout_soundfont, level="velocity", max_seconds=60.0
        )
        recording = {"raw": waveform, "sampling_rate": rate}
        audio_answers.append(classify(recording, top_k=1, transcribe=False)[0]["label"])
        if transcribing:
            transcribed_answers.append(classify(recording, top_k=1, transcribe=True)[0]["label"])
    for key, recording_answers, how in (
        ("audio_only_heldout_soundfont", audio_answers, "audio alone"),
        ("transcribed_heldout_soundfont", transcribed_answers, f"audio + its notes by {TRANSCRIBER}"),
    ):
        if recording_answers:
            results[key] = {
                **classification_metrics(truth, [labels.index(a) for a in recording_answers]),
                "soundfont": Path(args.heldout_soundfont).name,
                **({"transcriber": TRANSCRIBER} if key.startswith("transcribed") else {}),
            }
            print(f"{how}, held-out soundfont: {results[key]['accuracy']:.3f}")
    print(f"({time.monotonic() - started:.0f} s)")
    if not args.skip_cues:
        started = time.monotonic()
        results["cue_responses"] = cue_responses(classify, [str(path) for path, _ in clips])
        print(f"cue responses ({time.monotonic() - started:.0f} s):")
        for name, figure in results["cue_responses"].items():
            if isinstance(figure, dict):
                print(f"  {name}: {json.dumps(figure)}")
    results["agreement_midi_vs_audio_only"] = float(
        np.mean([a == b for a, b in zip(answers, audio_answers, strict=True)])
    )
    if transcribed_answers:
        results["agreement_midi_vs_transcribed"] = float(
            np.mean([a == b for a, b in zip(answers, transcribed_answers, strict=True)])
        )
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
