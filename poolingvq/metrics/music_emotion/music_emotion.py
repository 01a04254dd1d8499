"""`music_emotion`: the scores of a music emotion classifier (accuracy, macro / weighted F1, F1 per class and
the confusion matrix), as an `evaluate` metric.

Load it from its folder, offline: `evaluate.load(str(poolingvq.metrics.MUSIC_EMOTION_METRIC_DIR))` (the folder
ships inside the package), or from a Space built from the folder. The file stands alone (evaluate copies it into
its module cache; a Space runs it without this package), so it imports only evaluate, datasets, numpy and
scikit-learn. `music_emotion_scores` is the computation itself: training calls it directly, so that the figures
in a run's `metrics.json` and the metric's are one code.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

# Russell's quadrants, the classes of EMOPIA and VGMIDI: Q1 = V+A+, Q2 = V-A+, Q3 = V-A-, Q4 = V+A-.
DEFAULT_LABELS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")

_DESCRIPTION = """\
Scores of a single-label classifier of music emotion: accuracy, macro-averaged F1 (each class counts the same,
the usual headline score on EMOPIA and VGMIDI), support-weighted F1, the F1 of each class and the confusion
matrix. Classes are integer ids 0..num_labels-1; by default the four quadrants Q1..Q4 of Russell's
valence-arousal plane.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[int]`): predicted class ids, in 0..num_labels-1.
    references (`list[int]`): true class ids, in 0..num_labels-1.
    labels (`list[str]`, *optional*): the class names, in id order; their number sets the number of classes.
        Defaults to ["Q1", "Q2", "Q3", "Q4"], or to "0".."n-1" when only `num_labels` is given.
    num_labels (`int`, *optional*): the number of classes (default 4, or `len(labels)`).

Returns:
    accuracy (`float`): fraction of predictions equal to the reference.
    macro_f1 (`float`): unweighted mean of the per-class F1 scores, over all classes (a class that is neither
        predicted nor present scores 0).
    weighted_f1 (`float`): mean of the per-class F1 scores weighted by each class's number of references.
    per_class_f1 (`dict[str, float]`): the F1 score of each class, by name.
    confusion_matrix (`list[list[int]]`): [num_labels, num_labels]; row = reference class, column = predicted.

Examples:
    >>> metric = evaluate.load("path/to/music_emotion")  # the folder of this file
    >>> metric.compute(predictions=[0, 1, 2, 3], references=[0, 1, 2, 2])["accuracy"]
    0.75
"""

_CITATION = """\
@inproceedings{hung2021emopia,
  title={{EMOPIA}: A Multi-Modal Pop Piano Dataset For Emotion Recognition and Emotion-based Music Generation},
  author={Hung, Hsiao-Tzu and Ching, Joann and Doh, Seungheon and Kim, Nabin and Nam, Juhan and Yang, Yi-Hsuan},
  booktitle={Proceedings of the 22nd International Society for Music Information Retrieval Conference (ISMIR)},
  year={2021}
}
"""


def class_names(labels: Sequence[str] | None, num_labels: int | None) -> list[str]:
    """The class names, in id order, from whichever of `labels` / `num_labels` was given (they must agree)."""
    if labels is not None:
        names = [str(name) for name in labels]
        if num_labels is not None and num_labels != len(names):
            raise ValueError(
                f"num_labels={num_labels} disagrees with the {len(names)} names in labels={names}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"labels must be distinct names, got {names}")
    elif num_labels is None or num_labels == len(DEFAULT_LABELS):
        names = list(DEFAULT_LABELS)
    else:
        names = [str(index) for index in range(num_labels)]
    if len(names) < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {len(names)}")
    return names


def check_class_ids(name: str, values: np.ndarray, num_classes: int) -> None:
    """Raise a ValueError naming the offending values when some are not class ids 0..num_classes-1."""
    outside = values[(values < 0) | (values >= num_classes)]
    if outside.size:
        raise ValueError(
            f"{name} must be class ids in 0..{num_classes - 1}; found {sorted(set(outside.tolist()))[:10]}"
        )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MusicEmotion(evaluate.Metric):
    """Accuracy, macro / weighted F1, F1 per class and the confusion matrix of a music emotion classifier."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html",
                "https://annahung31.github.io/EMOPIA/",
            ],
        )

    def _compute(
        self,
        predictions: Sequence[int],
        references: Sequence[int],
        labels: Sequence[str] | None = None,
        num_labels: int | None = None,
    ) -> dict:
        return music_emotion_scores(predictions, references, labels=labels, num_labels=num_labels)


def music_emotion_scores(
    predictions: Sequence[int],
    references: Sequence[int],
    labels: Sequence[str] | None = None,
    num_labels: int | None = None,
) -> dict:
    """The metric's scores without evaluate's machinery (no cache file, no lock): what `compute` returns."""
    names = class_names(labels, num_labels)
    predicted = np.asarray(predictions, dtype=np.int64)
    expected = np.asarray(references, dtype=np.int64)
    if expected.size == 0:
        raise ValueError("no predictions to score: predictions and references are empty")
    if predicted.shape != expected.shape:
        raise ValueError(f"{predicted.size} predictions but {expected.size} references")
    check_class_ids("predictions", predicted, len(names))
    check_class_ids("references", expected, len(names))

    # Every class is scored, even one absent from this batch, so that scores of different runs average
    # over the same classes; zero_division=0 makes such a class score 0 without a warning.
    class_ids = list(range(len(names)))
    per_class = f1_score(expected, predicted, labels=class_ids, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(expected, predicted)),
        "macro_f1": float(f1_score(expected, predicted, labels=class_ids, average="macro", zero_division=0)),
        "weighted_f1": float(
            f1_score(expected, predicted, labels=class_ids, average="weighted", zero_division=0)
        ),
        "per_class_f1": {name: float(score) for name, score in zip(names, per_class, strict=True)},
        "confusion_matrix": confusion_matrix(expected, predicted, labels=class_ids).tolist(),
    }
