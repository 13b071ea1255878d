"""The training loop: accuracy on digits, metrics, exact resume, atomic files, torchrun."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from netspec import train as train_mod  # noqa: E402
from netspec.errors import DataProblem, ParamProblem  # noqa: E402
from netspec.graph import Ref, add_input, add_op, add_output, add_target, new_graph  # noqa: E402
from netspec.spec import Spec  # noqa: E402
from netspec.train import atomic_write, train  # noqa: E402
from netspec.trainconfig import TrainConfig  # noqa: E402
from netspec.types import TensorType  # noqa: E402


class _CE(torch.nn.Module):
    def forward(self, outputs, targets):
        total = torch.nn.functional.cross_entropy(outputs["logits"], targets["label"])
        return total, {"loss": total}


class _MSE(torch.nn.Module):
    def forward(self, outputs, targets):
        total = torch.nn.functional.mse_loss(outputs["logits"], targets["label"])
        return total, {"loss": total}


class StandIn(Spec):
    """A real Spec graph with hand-written lowerings: an MLP (with dropout) on flat digits."""

    def __init__(self, loss="CrossEntropy", dropout=0.1, inputs=1, **train):
        g = new_graph("tiny", "tiny.net")
        for i in range(inputs):
            add_input(g, f"x{i}" if i else "x", TensorType("float32", ("N", 64)))
        target_type = TensorType("int64", ("N",)) if loss == "CrossEntropy" else TensorType("float32", ("N", 10))
        add_target(g, "label", target_type)
        add_op(g, "fc", "Linear", None, [Ref("x")])
        g.nodes["fc"]["types"] = [TensorType("float32", ("N", 10))]
        add_output(g, "logits", Ref("fc"))
        add_op(g, "loss", loss, None, [Ref("fc"), Ref("label")], kind="loss")
        g.graph["train"] = TrainConfig.model_validate(train)
        super().__init__(g)
        self.loss, self.dropout = loss, dropout

    @property
    def rows(self):
        # The stand-in's graph has no op parameters; one row with its MACs is what training reads.
        return [{"name": "fc", "macs": 64 * 32 + 32 * 10, "elementwise": 32, "parameters": 0}]

    def to_torch(self):
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Dropout(self.dropout), torch.nn.Linear(32, 10))

    def loss_module(self):
        return _CE() if self.loss == "CrossEntropy" else _MSE()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_digits_mlp_learns_in_one_epoch(tmp_path):
    spec = StandIn(optimizer={"name": "Adam", "lr": 0.01}, batch_size=32, epochs=1)
    logs = []
    result = train(spec, out_dir=tmp_path, progress=False, log=logs.append)
    assert result["val_accuracy"] > 0.7
    assert result["epoch"] == 1
    rows = _lines(tmp_path / "metrics.jsonl")
    assert len(rows) == 1
    assert set(rows[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                            "seconds"}
    assert rows[0]["lr"] == pytest.approx(0.01)
    assert any("epoch 1/1" in line for line in logs)
    weights = load_file(str(tmp_path / "weights.safetensors"))
    assert set(weights) == set(spec.to_torch().state_dict())


def test_metrics_line_per_epoch_and_schedule(tmp_path):
    spec = StandIn(optimizer={"name": "SGD", "lr": 0.1}, schedule={"name": "Step", "step_epochs": 1, "gamma": 0.5},
                   epochs=3, batch_size=256)
    train(spec, out_dir=tmp_path, progress=False, log=lambda *_: None)
    rows = _lines(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # The lr is read after the epoch's last step, which already lies in the next epoch's decay.
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.025, 0.0125])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_no_accuracy_for_regression_and_no_val_without_split(tmp_path):
    spec = StandIn(loss="MSE", epochs=1, val_split=0.0, batch_size=256)
    result = train(spec, out_dir=tmp_path, progress=False, log=lambda *_: None)
    assert "val_accuracy" not in result and "val_loss" not in result
    spec = StandIn(loss="MSE", epochs=1, batch_size=256)
    result = train(spec, out_dir=tmp_path / "b", progress=False, log=lambda *_: None)
    assert "val_loss" in result and "val_accuracy" not in result


def _state(path: Path) -> dict:
    return load_file(str(path / "weights.safetensors"))


class _Killed(Exception):
    pass


def _kill_at(epoch_line: str):
    """A log that dies when the run reports `epoch_line`, as a job killed mid-run would."""

    def log(line):
        if line.startswith(epoch_line):
            raise _Killed
    return log


@pytest.mark.parametrize("optimizer", [{"name": "Adam", "lr": 0.01},
                                       {"name": "SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True}])
def test_resume_is_exact(tmp_path, optimizer):
    # Cosine without warmup: the lr of every step depends on the total epochs, so a resume
    # that lost the schedule position would drift.
    spec = StandIn(epochs=3, optimizer=optimizer, schedule="Cosine", batch_size=64, dropout=0.3)
    train(spec, out_dir=tmp_path / "straight", progress=False, log=lambda *_: None)
    # Killed after epoch 2 was logged but before its checkpoint: epoch 1's checkpoint remains.
    with pytest.raises(_Killed):
        train(spec, out_dir=tmp_path / "split", progress=False, log=_kill_at("epoch 2/3"))
    # Something else using the RNG between runs must not matter: the checkpoint restores it.
    torch.rand(100)
    logs = []
    train(spec, out_dir=tmp_path / "split", resume=True, progress=False, log=logs.append)
    assert any("resuming from epoch 1" in line for line in logs)
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "split")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows_a, rows_b = _lines(tmp_path / "straight" / "metrics.jsonl"), _lines(tmp_path / "split" / "metrics.jsonl")
    assert [r["epoch"] for r in rows_b] == [1, 2, 3]
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]
    assert [r["lr"] for r in rows_a] == [r["lr"] for r in rows_b]
    meta = json.loads((tmp_path / "split" / "checkpoint.json").read_text())
    assert meta["epoch"] == 3 and meta["config"]["epochs"] == 3
    assert {"python", "numpy", "torch"} <= set(meta["rng"])


def test_resume_can_extend_a_finished_run(tmp_path):
    spec = StandIn(epochs=2, optimizer={"name": "Adam", "lr": 0.01}, batch_size=128, dropout=0.3)
    train(spec, out_dir=tmp_path / "straight", progress=False, log=lambda *_: None)
    train(spec, out_dir=tmp_path / "split", epochs=1, progress=False, log=lambda *_: None)
    train(spec, out_dir=tmp_path / "split", resume=True, progress=False, log=lambda *_: None)
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_has_no_pickle(tmp_path):
    train(StandIn(epochs=1, batch_size=256), out_dir=tmp_path, progress=False, log=lambda *_: None)
    tensors = load_file(str(tmp_path / "checkpoint.safetensors"))
    assert any(k.startswith("model.") for k in tensors) and any(k.startswith("optim.") for k in tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".netspec.lock", "checkpoint.json", "checkpoint.safetensors", "curves.png", "last.safetensors",
        "metrics.csv", "metrics.jsonl", "run.json", "weights.safetensors"]


def test_killed_checkpoint_leaves_previous_files_intact(tmp_path, monkeypatch):
    spec = StandIn(epochs=2, batch_size=128)
    train(spec, out_dir=tmp_path, epochs=1, progress=False, log=lambda *_: None)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    real_replace = os.replace

    def dying_replace(src, dst):
        if str(dst).endswith("checkpoint.safetensors"):
            raise KeyboardInterrupt  # as if the job were killed mid-save
        real_replace(src, dst)

    monkeypatch.setattr(train_mod.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        train(spec, out_dir=tmp_path, resume=True, progress=False, log=lambda *_: None)
    monkeypatch.setattr(train_mod.os, "replace", real_replace)
    assert before["checkpoint.safetensors"] == (tmp_path / "checkpoint.safetensors").read_bytes()
    assert before["checkpoint.json"] == (tmp_path / "checkpoint.json").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # metrics.jsonl got epoch 2 before the crash; resuming from epoch 1 drops and redoes it.
    result = train(spec, out_dir=tmp_path, resume=True, progress=False, log=lambda *_: None)
    assert [r["epoch"] for r in _lines(tmp_path / "metrics.jsonl")] == [1, 2]
    assert result["epoch"] == 2


def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write(target, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(train_mod.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    logs = []
    result = train(StandIn(epochs=1, batch_size=256), out_dir=tmp_path, resume=True, progress=False,
                   log=logs.append)
    assert result["epoch"] == 1 and any("starting a new run" in line for line in logs)


def test_resume_refuses_a_corrupt_or_foreign_checkpoint(tmp_path):
    (tmp_path / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataProblem, match="cannot resume"):
        train(StandIn(epochs=1), out_dir=tmp_path, resume=True, progress=False, log=lambda *_: None)

    other = StandIn(epochs=1, batch_size=256)
    other.to_torch = lambda: torch.nn.Sequential(torch.nn.Linear(64, 10))
    train(other, out_dir=tmp_path / "o", progress=False, log=lambda *_: None)
    with pytest.raises(DataProblem, match="does not fit this tiny.*0.weight is \\[10, 64\\], this network's is \\[32, 64\\]"):
        train(StandIn(epochs=2), out_dir=tmp_path / "o", resume=True, progress=False, log=lambda *_: None)


def test_several_inputs_need_a_named_npz(tmp_path):
    with pytest.raises(DataProblem, match=r"2 input\(s\) and 1 target\(s\) \(x, x1, label\) trains on a .npz"):
        train(StandIn(inputs=2), out_dir=tmp_path, progress=False)


def test_cli_overrides_are_validated(tmp_path):
    with pytest.raises(ParamProblem, match="--epochs"):
        train(StandIn(), out_dir=tmp_path, epochs=0, progress=False)


def test_cuda_device_without_cuda_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ParamProblem, match="no CUDA"):
        train(StandIn(device="cuda"), out_dir=tmp_path, progress=False)


def test_early_stopping(tmp_path):
    # lr 0 never improves the loss, so patience 1 stops after the second epoch.
    spec = StandIn(epochs=10, batch_size=256, optimizer={"name": "SGD", "lr": 1e-30}, dropout=0.0,
                   early_stopping_patience=1)
    logs = []
    result = train(spec, out_dir=tmp_path, progress=False, log=logs.append)
    assert result["epoch"] == 2
    assert any("early stopping" in line for line in logs)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2


def test_grad_clip_runs(tmp_path):
    result = train(StandIn(epochs=1, batch_size=256, grad_clip=0.5), out_dir=tmp_path, progress=False,
                   log=lambda *_: None)
    assert result["train_loss"] > 0


_DDP_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
from tests.test_train import StandIn
from netspec.train import train
result = train(StandIn(epochs=1, batch_size=32, dropout=0.0, optimizer={{"name": "Adam", "lr": 0.01}}),
               out_dir={out!r}, progress=False,
               log=lambda *_: None)
# One file per rank: two processes sharing a stdout pipe could interleave their lines.
with open(f"result-{{os.environ['RANK']}}.json", "w") as f:
    json.dump(result, f)
"""


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_two_processes_on_cpu(tmp_path):
    root = str(Path(__file__).resolve().parent.parent)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT.format(root=root, out=str(tmp_path / "out"))))
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([str(torchrun if torchrun.exists() else "torchrun"), "--nproc_per_node=2",
                           "--standalone", str(script)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"result-{rank}.json").read_text()) for rank in (0, 1)]
    # Both ranks report the same all-reduced metrics; only rank 0 wrote files.
    assert results[0]["train_loss"] == results[1]["train_loss"]
    assert results[0]["val_accuracy"] > 0.5
    assert len(_lines(tmp_path / "out" / "metrics.jsonl")) == 1
    assert (tmp_path / "out" / "weights.safetensors").exists()


MODELS = Path(__file__).resolve().parent.parent / "models"


def test_real_spec_mlp_trains_and_resumes_exactly(tmp_path):
    import netspec

    spec = netspec.load(MODELS / "mlp.net")
    quiet = dict(progress=False, log=lambda *_: None)
    result = train(spec, out_dir=tmp_path / "a", epochs=2, **quiet)
    assert result["val_accuracy"] > 0.7
    train(spec, out_dir=tmp_path / "b", epochs=1, **quiet)
    train(spec, out_dir=tmp_path / "b", epochs=2, resume=True, **quiet)
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert set(a) == set(spec.to_torch().state_dict())
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_real_spec_lenet_resizes_digits(tmp_path):
    import netspec

    spec = netspec.load(MODELS / "lenet5.net")
    result = train(spec, out_dir=tmp_path, epochs=1, batch_size=128, progress=False, log=lambda *_: None)
    assert result["epoch"] == 1 and 0 <= result["val_accuracy"] <= 1
