"""The package's own error types.

Remote code: this file is copied flat into every saved model folder, so it imports nothing but the
standard library. Every problem with a user's input (a file that is missing, empty, corrupt, silent,
of the wrong kind or absurdly long) raises `PoolingVQInputError`, a `ValueError`, whose message names
the input and the problem, so a server can catch one type and show the message as it is.
"""

from __future__ import annotations

import os


class PoolingVQInputError(ValueError):
    """A user's input (audio, MIDI, tokens) cannot be used; the message says which input and why."""

    def __init__(self, source: object, problem: str) -> None:
        self.source = describe_source(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def describe_source(source: object) -> str:
    """A short, human-readable name for an input: its path, or its kind and size for in-memory data."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        origin = getattr(source, "origin", None)  # downloaded bytes remember their URL
        return str(origin) if origin else f"<{len(source)} bytes>"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"<{type(source).__name__} of shape {tuple(shape)}>"
    return f"<{type(source).__name__}>"
