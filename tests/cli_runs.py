"""What the training tests share: a tiny classifier spec on the built-in digits, and the CLI."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from netspec.cli import main


def tiny_spec(epochs: int, batch_size: int) -> str:
    """A two-layer MLP on the flat 8x8 digits, trained for `epochs` with `batch_size`."""
    return f"""
network Tiny(classes = 10, hidden = 16) {{
    input image: float32[N, 64]
    output logits = image -> Linear(hidden) -> ReLU -> Linear(classes)
}}
loss CrossEntropy(logits, label)
train {{
    optimizer = Adam(lr=0.01)
    epochs = {epochs}
    batch_size = {batch_size}
}}
"""


def write_spec(folder: Path, text: str, name: str = "tiny.net") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def run(*args):
    """`netspec ARGS...` in this process; the result's exit_code and output."""
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in the test's own folder: a run without --out goes to runs/ there, not into the repository."""
    monkeypatch.chdir(tmp_path)
