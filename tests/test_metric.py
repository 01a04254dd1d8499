"""Tests of poolingvq/metrics/music_emotion/: the `evaluate` metric, checked against scikit-learn; its Space (card
YAML, app.py); its place in the package; training scoring with it."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import evaluate
import numpy as np
import pytest
import yaml
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None

from poolingvq.metrics import MUSIC_EMOTION_METRIC_DIR as METRIC_DIR

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def metric() -> evaluate.EvaluationModule:
    return evaluate.load(str(METRIC_DIR))


@pytest.mark.parametrize(("seed", "num_labels"), [(0, 4), (1, 4), (2, 6), (3, 2)])
def test_scores_match_scikit_learn_on_random_predictions(
    metric: evaluate.EvaluationModule, seed: int, num_labels: int
) -> None:
    rng = np.random.default_rng(seed)
    references = rng.integers(0, num_labels, size=200)
    # a classifier that is right about half the time, so no score is trivially 0 or 1
    predictions = np.where(rng.random(200) < 0.5, references, rng.integers(0, num_labels, size=200))
    names = [f"class_{i}" for i in range(num_labels)]
    scores = metric.compute(predictions=predictions, references=references, labels=names)

    assert scores["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert scores["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
    assert scores["weighted_f1"] == pytest.approx(f1_score(references, predictions, average="weighted"))
    per_class = f1_score(references, predictions, average=None)
    assert list(scores["per_class_f1"]) == names
    assert list(scores["per_class_f1"].values()) == pytest.approx(per_class.tolist())
    assert scores["confusion_matrix"] == confusion_matrix(references, predictions).tolist()


def test_default_is_four_quadrants_and_absent_classes_count(metric: evaluate.EvaluationModule) -> None:
    predictions, references = [0, 1, 1, 0], [0, 1, 0, 0]  # Q3 and Q4 appear nowhere
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning for the absent classes
        scores = metric.compute(predictions=predictions, references=references)
    assert list(scores["per_class_f1"]) == ["Q1", "Q2", "Q3", "Q4"]
    assert scores["per_class_f1"]["Q3"] == scores["per_class_f1"]["Q4"] == 0.0
    # the macro mean runs over all four classes, not only the two present
    assert scores["macro_f1"] == pytest.approx(
        (scores["per_class_f1"]["Q1"] + scores["per_class_f1"]["Q2"]) / 4
    )
    assert np.array(scores["confusion_matrix"]).shape == (4, 4)
    numbered = metric.compute(predictions=predictions, references=references, num_labels=3)
    assert list(numbered["per_class_f1"]) == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"predictions": [0, 4], "references": [0, 1]}, "predictions must be class ids in 0..3"),
        ({"predictions": [0, 1], "references": [-1, 1]}, "references must be class ids"),
        ({"predictions": [0, 1], "references": [0, 1], "labels": ["a", "b"], "num_labels": 3}, "disagrees"),
        ({"predictions": [0, 1], "references": [0, 1], "labels": ["a", "a"]}, "distinct"),
        ({"predictions": [0, 0], "references": [0, 0], "num_labels": 1}, "at least 2 classes"),
    ],
)
def test_bad_inputs_raise_value_errors(arguments: dict, message: str) -> None:
    # A fresh metric with its own cache file: evaluate keeps the lock of a failed computation's file, and the
    # next computation of the same experiment would wait a second for it.
    metric = evaluate.load(str(METRIC_DIR), experiment_id=message)
    with pytest.raises(ValueError, match=message):
        metric.compute(**arguments)


def test_loads_offline_from_its_folder(tmp_path: Path) -> None:
    """In a fresh process with the Hub and evaluate both switched offline, and an empty module cache."""
    code = (
        "import evaluate, json, sys; "
        "metric = evaluate.load(sys.argv[1]); "
        "print(json.dumps(metric.compute(predictions=[0, 1, 2, 3], references=[0, 1, 2, 2])))"
    )
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code, str(METRIC_DIR)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    assert scores["accuracy"] == 0.75 and scores["confusion_matrix"][2] == [0, 0, 1, 1]


def test_the_folder_is_a_space_as_evaluate_metrics_are() -> None:
    card = (METRIC_DIR / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert {"evaluate", "metric"} <= set(header["tags"])
    assert (METRIC_DIR / header["app_file"]).is_file()
    requirements = (METRIC_DIR / "requirements.txt").read_text().split()
    assert "evaluate" in requirements and "scikit-learn" in requirements


def test_the_app_scores_a_table_like_the_metric(metric: evaluate.EvaluationModule) -> None:
    """The Space's form function on the table gradio hands it (a DataFrame of numbers, an empty last row)."""
    import pandas as pd

    spec = importlib.util.spec_from_file_location("music_emotion_app", METRIC_DIR / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)  # builds the form, does not serve it
    compute = app.demo.fns[0].fn
    table = pd.DataFrame(
        [[0.0, 0.0], [1.0, 1.0], [2.0, 3.0], [3.0, 3.0], ["", ""]], columns=["predictions", "references"]
    )
    assert compute(table) == metric.compute(predictions=[0, 1, 2, 3], references=[0, 1, 3, 3])


def test_the_folder_ships_with_the_package() -> None:
    """Every file of the folder matches the package data setuptools installs (a wheel carries it)."""
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    package_data = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = package_data["package-data"]["poolingvq"]
    package_dir = REPOSITORY / "poolingvq"
    assert METRIC_DIR.parent.parent == package_dir
    for path in METRIC_DIR.iterdir():
        if path.is_file():
            relative = path.relative_to(package_dir).as_posix()
            assert any(fnmatch.fnmatch(relative, pattern) for pattern in globs), relative


def test_training_scores_with_the_metric(metric: evaluate.EvaluationModule) -> None:
    from poolingvq.training import classification_metrics

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, size=50).tolist()
    predictions = rng.integers(0, 4, size=50).tolist()
    assert classification_metrics(labels, predictions) == metric.compute(
        predictions=predictions, references=labels
    )
