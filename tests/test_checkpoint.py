"""checkpoint: tensors go to disk as they are, copied only where safetensors needs it."""

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from netspec import checkpoint  # noqa: E402


def test_tensors_are_written_without_copies_except_tied_ones(tmp_path, monkeypatch):
    import safetensors.torch

    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    m = torch.ones(5)
    given = {"a": w, "tied": w, "view": w[1], "m": m}
    passed = {}
    real = safetensors.torch.save_file

    def spy(tensors, filename, metadata=None):
        passed.update(tensors)
        real(tensors, filename, metadata=metadata)
    monkeypatch.setattr(safetensors.torch, "save_file", spy)
    checkpoint._write_tensors(tmp_path / "x.safetensors", given, {"k": "v"})
    assert passed["a"] is w and passed["m"] is m  # no copy of a tensor that owns its memory
    assert passed["tied"].data_ptr() != w.data_ptr() and passed["view"].data_ptr() != w.data_ptr()
    back = load_file(tmp_path / "x.safetensors")
    for k, v in given.items():
        assert torch.equal(back[k], v)
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]  # no temporary left


def test_cpu_view_does_not_copy_and_cpu_state_does():
    lin = torch.nn.Linear(3, 2)
    view, state = checkpoint.cpu_view(lin), checkpoint.cpu_state(lin)
    assert view["weight"].data_ptr() == lin.weight.data_ptr()
    assert state["weight"].data_ptr() != lin.weight.data_ptr() and torch.equal(state["weight"], lin.weight)
