"""The README's "On a GPU machine with internet": every command of its block parses with the parser of the program
that would run it (`poolingvq`'s, `accelerate`'s, pip's, `hf`'s), without `--help` and without running anything, and
the `train` arguments it builds pass `train`'s own checks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## On a GPU machine with internet"


def section_commands() -> list[list[str]]:
    """The commands of the section's bash block, as shell words (comments and continuation lines handled)."""
    text = README.read_text().split(SECTION)[1].split("\n## ")[0]
    block = re.search(r"```bash\n(.*?)```", text, flags=re.DOTALL)[1]
    return [
        words
        for line in block.replace("\\\n", " ").splitlines()
        if (words := shlex.split(line, comments=True))
    ]


def check_poolingvq(words: list[str]) -> str:
    from poolingvq.cli import build_parser

    namespace = build_parser().parse_args(words)
    if namespace.command in ("train", "experiment"):
        check_training_namespace(namespace)
    return namespace.command


def check_training_namespace(namespace) -> None:
    """`train`'s own checks of what the flags give (e.g. --dataset-path with --data-dir is refused)."""
    from poolingvq.arguments import dataclass_from_namespace
    from poolingvq.training import TrainingArguments, check_arguments

    check_arguments(dataclass_from_namespace(TrainingArguments, namespace))


def check_accelerate(words: list[str]) -> str:
    if words[0] == "launch":
        import argparse

        from accelerate.commands.launch import launch_command_parser

        from poolingvq.training import add_training_arguments

        launch = launch_command_parser().parse_args(words[1:])
        assert launch.module and launch.training_script == "poolingvq.train"
        parser = argparse.ArgumentParser()
        add_training_arguments(parser)
        check_training_namespace(parser.parse_args(launch.training_script_args))
        return "accelerate launch"
    from accelerate.commands.config import get_config_parser

    assert get_config_parser().parse_args(words[1:]).subcommand == "default"  # no questions asked
    return "accelerate config"


def check_python(words: list[str]) -> str:
    if words[:3] == ["-m", "pip", "install"]:
        from pip._internal.commands import create_command

        options, requirements = create_command("install").parse_args(words[3:])
        assert requirements or options.editables
        return "pip install"
    assert words[0] == "-c", words
    compile(words[1], "README.md", "exec")
    return "python -c"


def check_hf(words: list[str]) -> str:
    from huggingface_hub.cli.hf import app

    # the subcommand as `hf` resolves it (its commands load lazily), then its own parser
    name, command, rest = app.resolve_command(app.make_context("hf", list(words)), list(words))
    params = command.make_context(name, rest).params
    assert words[0] == "upload" and params["repo_type"] == "dataset" and params["private"]
    return "hf upload"


CHECKERS = {
    "poolingvq": check_poolingvq,
    "accelerate": check_accelerate,
    "python": check_python,
    "hf": check_hf,
}


def test_every_command_of_the_gpu_section_parses() -> None:
    checked = []
    for words in section_commands():
        assert words[0] in CHECKERS, f"a command this test cannot check: {shlex.join(words)}"
        checked.append(CHECKERS[words[0]](words[1:]))
    assert checked == [
        "pip install",
        "pip install",
        "python -c",
        "import-weights",
        "prepare-dataset",
        "hf upload",
        "accelerate config",
        "accelerate launch",
        "accelerate launch",
        "experiment",
        "experiment",
    ]


def test_the_section_says_the_gpu_benchmark_was_not_run_and_gives_no_timings() -> None:
    text = README.read_text().split(SECTION)[1].split("\n## ")[0]
    assert "`benchmarks/gpu.sh` has not been run" in text
    assert not re.search(r"\d+(\.\d+)?\s*(s|ms|min|minutes|hours|clips/s|GiB|GB)\b", text)


@pytest.mark.parametrize(
    "line, problem",
    [
        ("poolingvq train --dataset-path x --data-dir y", "--data-dir: cannot go with --dataset-path"),
        (
            "accelerate launch -m poolingvq.train --dataset-path x --audio-dir y",
            "--audio-dir: cannot go with",
        ),
    ],
)
def test_the_checks_would_catch_a_command_train_refuses(line: str, problem: str) -> None:
    from poolingvq.errors_poolingvq import PoolingVQInputError

    words = shlex.split(line)
    with pytest.raises(PoolingVQInputError, match=problem):
        CHECKERS[words[0]](words[1:])
