"""The run folder: naming, refusing to overwrite, the lock, stale temporaries, umask, run.json,
and the later commands that take the folder instead of the spec."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from netspec import runfolder
from tests.cli_runs import run as run_here, tiny_spec, write_spec
from netspec.errors import DataProblem

ROOT = Path(__file__).resolve().parent.parent

TINY = tiny_spec(epochs=2, batch_size=256)

@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_spec(tmp_path, TINY)


def run(*args, cwd=None):
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        return run_here(*args)
    finally:
        os.chdir(old)


# ---------------------------------------------------------------- naming and refusing

def test_default_folder_numbers_runs(tmp_path):
    root = tmp_path / "runs"
    assert runfolder.default_folder("Net", False, root) == root / "Net"
    assert runfolder.default_folder("Net", True, root) == root / "Net"
    for name in ("Net", "Net-2"):
        (root / name).mkdir(parents=True)
        (root / name / "metrics.jsonl").write_text("")
    assert runfolder.default_folder("Net", False, root) == root / "Net-3"
    assert runfolder.default_folder("Net", True, root) == root / "Net-2"  # the newest run
    (root / "Net-3").mkdir()
    (root / "Net-3" / "notes.txt").write_text("not a run, but not empty either")
    assert runfolder.default_folder("Net", False, root) == root / "Net-4"


def test_cli_default_folder_and_resume_of_the_newest(tiny, tmp_path):
    (tmp_path / "runs" / "Tiny").mkdir(parents=True)
    (tmp_path / "runs" / "Tiny" / "run.json").write_text("{}")  # taken
    r = run("train", tiny, "--epochs", "1", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "run folder: runs/Tiny-2 " in r.output
    r = run("train", tiny, "--epochs", "2", "--resume", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "resuming from epoch 1 in 'runs/Tiny-2'" in r.output


def test_explicit_out_holding_a_run_is_refused_and_loses_nothing(tiny, tmp_path):
    out = tmp_path / "run"
    assert run("train", tiny, "--epochs", "1", "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = run("train", tiny, "--epochs", "1", "--out", out)
    assert r.exit_code == 1
    assert f"'{out}' already holds a run (Tiny, 1 epoch trained)" in r.output
    assert "`--resume` continues it, `--force` replaces it" in r.output
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_refusal_says_where_the_checkpoint_is_when_rows_run_past_it(tiny, tmp_path):
    # A kill between an epoch's metrics row and its checkpoint leaves one row more than the
    # checkpoint holds; the refusal says which epoch --resume would continue from.
    out = tmp_path / "run"
    assert run("train", tiny, "--epochs", "1", "--out", out).exit_code == 0
    rows = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(rows + [rows[-1].replace('"epoch": 1', '"epoch": 2')]) + "\n")
    r = run("train", tiny, "--epochs", "1", "--out", out)
    assert r.exit_code == 1
    assert f"'{out}' already holds a run (Tiny, 2 epochs trained, checkpoint at epoch 1)" in r.output


def test_out_that_is_a_file_is_refused(tiny, tmp_path):
    (tmp_path / "f").write_text("x")
    r = run("train", tiny, "--out", tmp_path / "f")
    assert r.exit_code == 1 and "is a file, not a folder" in r.output


def test_force_keeps_the_old_run_until_the_new_one_has_an_epoch(tiny, tmp_path):
    out = tmp_path / "run"
    assert run("train", tiny, "--epochs", "2", "--out", out).exit_code == 0
    old_metrics = (out / "metrics.jsonl").read_bytes()
    # A new run that fails before its first epoch (bad data) leaves every file of the old one.
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    r = run("train", tiny, "--force", "--out", out, "--data", bad)
    assert r.exit_code == 1
    assert (out / "metrics.jsonl").read_bytes() == old_metrics
    # A forced run that trains replaces the history.
    r = run("train", tiny, "--force", "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1]


# ---------------------------------------------------------------- run.json and later commands

def test_run_json_records_the_run(tiny, tmp_path):
    out = tmp_path / "run"
    r = run("train", tiny, "--set", "hidden=8", "--epochs", "2", "--seed", "3", "--out", out)
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "run.json").read_text())
    assert rec["format"] == "netspec-run-1" and rec["network"] == "Tiny"
    assert rec["spec"]["path"] == str(tiny) and rec["spec"]["text"] == TINY and len(rec["spec"]["sha256"]) == 64
    assert rec["sets"] == {"hidden": "8"}
    assert rec["train"]["epochs"] == 2 and rec["train"]["seed"] == 3 and rec["seed"] == 3
    assert rec["classes"] == [str(i) for i in range(10)]
    assert rec["input"] == {"name": "image", "dtype": "float32", "shape": ["N", 64], "layout": None,
                            "channels": None, "height": None, "width": None, "value_range": [0, 1],
                            "mean": None, "std": None}
    assert rec["data"]["source"] is None and rec["data"]["train_size"] + rec["data"]["val_size"] == 1797
    assert rec["data"]["val_split"] == 0.2 and rec["data"]["seed"] == 3
    assert rec["best"]["epoch"] in (1, 2) and "val_accuracy" in rec["best"]
    assert set(rec["versions"]) >= {"netspec", "torch", "onnx"}
    assert rec["command"][:2] == ["netspec", "train"] or rec["command"]
    assert rec["parameters"] == {"total": 64 * 8 + 8 + 8 * 10 + 10, "trainable": 64 * 8 + 8 + 8 * 10 + 10,
                                 "frozen": 0}
    assert (out / "spec.net").read_text() == TINY


def test_run_folder_alone_checks_compiles_and_evaluates(tiny, tmp_path):
    out = tmp_path / "run"
    r = run("train", tiny, "--set", "hidden=8", "--epochs", "2", "--out", out)
    assert r.exit_code == 0, r.output
    best = json.loads((out / "run.json").read_text())["best"]
    tiny.write_text(TINY.replace("Linear(hidden)", "Linear(hidden * 2)"))  # the spec moves on
    r = run("check", out, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["parameters"] == 64 * 8 + 8 + 8 * 10 + 10  # the run's hidden=8, as trained
    r = run("compile", out, "-o", tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    assert f"weights: {out / 'weights.safetensors'}" in r.output
    r = run("evaluate", out, tmp_path / "m.onnx")
    assert r.exit_code == 0, r.output
    accuracy = float(r.output.split("accuracy ")[1].split(",")[0])
    assert accuracy == pytest.approx(best["val_accuracy"], abs=1e-4)
    # --set against a run folder is refused: the folder fixes them.
    r = run("check", out, "--set", "hidden=4")
    assert r.exit_code == 2 and "fixes its --set values (hidden=8)" in r.output


def test_a_folder_without_run_json_is_not_a_spec(tmp_path):
    r = run("check", tmp_path)
    assert r.exit_code == 1 and "not a run folder" in r.output


def test_damaged_run_json(tiny, tmp_path):
    out = tmp_path / "run"
    assert run("train", tiny, "--epochs", "1", "--out", out).exit_code == 0
    (out / "run.json").write_text("{not json")
    r = run("check", out)
    assert r.exit_code == 1 and "is not valid JSON" in r.output
    (out / "run.json").write_text(json.dumps({"format": "netspec-run-1", "network": "Tiny"}))
    r = run("check", out)
    assert r.exit_code == 1 and "lacks a valid 'spec' entry" in r.output


# ---------------------------------------------------------------- lock, temporaries, umask

def test_lock_refuses_a_second_holder_and_names_it(tmp_path):
    with runfolder.Lock(tmp_path) as first:
        assert first.stale is None
        with pytest.raises(DataProblem, match=rf"in use by another training run \(PID {os.getpid()} on .*started 20"):
            runfolder.Lock(tmp_path).acquire()
    # Released: the next run takes it, and a clean release leaves no holder to report.
    with runfolder.Lock(tmp_path) as again:
        assert again.stale is None


def test_stale_lock_of_a_killed_process_is_taken(tmp_path):
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from netspec.runfolder import Lock
        Lock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DataProblem, match=f"PID {proc.pid}"):
            runfolder.Lock(tmp_path).acquire()
        proc.kill()
        proc.wait(timeout=10)
    finally:
        proc.kill()
    lock = runfolder.Lock(tmp_path).acquire()
    try:
        assert lock.stale is not None and f"PID {proc.pid}" in lock.stale
    finally:
        lock.release()


def test_two_cli_runs_on_one_folder(tiny, tmp_path):
    out = tmp_path / "run"
    with runfolder.Lock(out):
        r = run("train", tiny, "--out", out)
    assert r.exit_code == 1 and "in use by another training run (PID" in r.output
    assert not (out / "metrics.jsonl").exists()


def test_stale_temporaries_are_removed_and_files_honour_the_umask(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"x" * 1000)
    old = os.umask(0o027)
    try:
        r = run("train", tiny, "--epochs", "1", "--out", out)
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert "removed 1 temporary file(s) left by a killed process" in r.output
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    for name in ("weights.safetensors", "checkpoint.safetensors", "metrics.jsonl", "run.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o640, name


def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        runfolder.atomic_write(tmp_path / "a", b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o664


def test_metrics_write_null_not_nan(tmp_path):
    from netspec.runlog import RunLog
    log = RunLog(tmp_path, [])
    log.add({"epoch": 1, "train_loss": float("nan"), "val_loss": float("inf"), "lr": 0.1, "seconds": 1.0})
    log.write()
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line) == {"epoch": 1, "train_loss": None, "val_loss": None, "lr": 0.1, "seconds": 1.0}
    assert "NaN" not in line and "Infinity" not in line
    assert (tmp_path / "metrics.csv").read_text().splitlines()[1] == "1,,,0.1,1.0"
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- disks that refuse writes

def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_out_is_refused_before_training(tiny, tmp_path):
    ro = tmp_path / "ro"
    if not _mount_tmpfs(ro, "ro,size=1m"):
        pytest.skip("mounting a read-only tmpfs needs root and mount(8)")
    try:
        start = time.perf_counter()
        r = run("train", tiny, "--out", ro / "run")
        assert r.exit_code == 1
        assert "cannot write" in r.output and "read-only" in r.output
        assert "epoch 1" not in r.output  # refused before any training
        assert time.perf_counter() - start < 30
    finally:
        _umount(ro)


def test_full_disk_during_training_is_a_user_error_and_keeps_the_checkpoint(tmp_path):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "size=600k"):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    try:
        # A network whose checkpoint (weights + Adam state, ~2 MB) cannot fit in 600 KB.
        spec = small.parent / "wide.net"
        spec.write_text(TINY.replace("hidden = 16", "hidden = 1024"))
        r = run("train", spec, "--epochs", "1", "--out", small / "run")
        assert r.exit_code == 1, r.output
        assert "the disk is full" in r.output and "no epoch was saved" in r.output
        assert "internal error" not in r.output
        assert not [p for p in (small / "run").iterdir() if p.name.endswith(".tmp")]
    finally:
        _umount(small)


def test_a_run_that_fails_at_start_leaves_no_folder(tiny, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    r = run("train", tiny, "--data", bad, "--out", tmp_path / "new" / "run")
    assert r.exit_code == 1
    assert not (tmp_path / "new" / "run").exists()
    r = run("train", tiny, "--data", bad, cwd=tmp_path)
    assert r.exit_code == 1 and not (tmp_path / "runs" / "Tiny").exists()


def test_contradictory_flags_are_usage_errors(tiny, tmp_path):
    r = run("train", tiny, "--resume", "--force")
    assert r.exit_code == 2 and "give one of them" in r.output
    r = run("train", tiny, "--resume", "--init", tmp_path)
    assert r.exit_code == 2 and "--init sets the weights a new run starts from" in r.output


def test_the_python_api_loads_a_run_folder_as_the_cli_does(tiny, tmp_path):
    import netspec
    out = tmp_path / "run"
    assert run("train", tiny, "--epochs", "1", "--out", out, "--set", "hidden=8").exit_code == 0
    s = netspec.load(out)
    assert s.run_dir == str(out) and s.run["sets"] == {"hidden": "8"}
    assert s.parameters == 64 * 8 + 8 + 8 * 10 + 10
    with pytest.raises(netspec.NetspecError, match="fixes its --set values"):
        netspec.load(out, params={"hidden": 4})


def test_weights_of_another_shape_name_the_run_that_wrote_them(tiny, tmp_path):
    out = tmp_path / "run"
    assert run("train", tiny, "--epochs", "1", "--out", out, "--set", "hidden=8").exit_code == 0
    r = run("compile", tiny, "--weights", out, "-o", tmp_path / "m.onnx")  # hidden = 16 by default
    assert r.exit_code == 1, r.output
    assert "weights.safetensors (weights of Tiny) has 3 tensors of the wrong shape" in r.output
    assert f"they were trained as Tiny with hidden=8; `netspec compile {out} -o MODEL.onnx`" in r.output
