"""Paths that are not regular files: outputs are never written over them, inputs never read from them.

Only FIFOs made in tmp_path, and (as root) a character device node made there; never /dev/*.
"""

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from netspec.cli import main
from netspec.errors import DataProblem
from netspec.file_kinds import neighbour_hint

MODELS = Path(__file__).resolve().parent.parent / "models"
MLP = str(MODELS / "mlp.net")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def char_device(path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


NODES = {"fifo": (fifo, stat.S_ISFIFO, "FIFO"), "chardev": (char_device, stat.S_ISCHR, "character device")}


@pytest.fixture(params=sorted(NODES))
def node(request, tmp_path):
    """(make(path) -> path, is_still_it(mode), the word the error uses)."""
    return NODES[request.param]


def still(path: Path, test) -> bool:
    return test(os.lstat(path).st_mode)


# ---------------------------------------------------------------- F1: outputs

def test_compile_refuses_a_special_output_before_work_and_leaves_it(tmp_path, node):
    make, test, word = node
    out = make(tmp_path / "m.onnx")
    r = run("compile", MLP, "-o", out)
    assert r.exit_code == 1, r.output
    assert f"'{out}' is a {word}" in r.output and "not a regular file" in r.output
    assert still(out, test)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporaries left


def test_compile_refuses_a_special_variant_output(tmp_path):
    out = fifo(tmp_path / "m.fp16.onnx")
    r = run("compile", MLP, "-o", tmp_path / "m.onnx", "--float16")
    assert r.exit_code == 1, r.output
    assert f"'{out}' is a FIFO" in r.output and stat.S_ISFIFO(os.lstat(out).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["m.fp16.onnx"]  # nor was the float32 model written


def test_graph_refuses_a_special_output(tmp_path, node):
    make, test, word = node
    out = make(tmp_path / "g.svg")
    r = run("graph", MLP, "-o", out)
    assert r.exit_code == 1, r.output
    assert f"is a {word}" in r.output
    assert still(out, test)


def test_weights_import_refuses_a_special_output_even_with_force(tmp_path, node):
    from netspec.spec import load
    from netspec.weights import init_weights, save_safetensors
    make, test, word = node
    src = tmp_path / "src.safetensors"
    save_safetensors(init_weights(load(MLP).graph, seed=1), src)
    out = make(tmp_path / "w.safetensors")
    r = run("weights", "import", src, "--spec", MLP, "-o", out, "--force")
    assert r.exit_code == 1, r.output
    assert f"is a {word}" in r.output
    assert still(out, test)


def test_the_shared_writers_refuse_special_files(tmp_path, node):
    """Every writer checks for itself, so a new command that uses one is safe too."""
    from netspec import draw
    from netspec.lower_onnx import save
    from netspec.runfolder import atomic_write
    from netspec.spec import load
    from netspec.weights import init_weights, save_safetensors
    make, test, word = node
    s = load(MLP)
    writers = {"a.json": lambda p: atomic_write(p, b"{}"),
               "w.safetensors": lambda p: save_safetensors(init_weights(s.graph, seed=0), p),
               "m.onnx": lambda p: save(s.lower(weights=init_weights(s.graph, seed=0)), p),
               "g.dot": lambda p: draw.write(s, p)}
    for name, write in writers.items():
        out = make(tmp_path / name)
        with pytest.raises(DataProblem, match=f"is a {word}"):
            write(out)
        assert still(out, test), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(writers)  # no temporaries left


def test_train_refuses_a_special_run_folder(tmp_path):
    from netspec.runfolder import check_out
    out = fifo(tmp_path / "run")
    with pytest.raises(DataProblem, match="is a FIFO .*, not a folder"):
        check_out(out, resume=False, force=True)
    check_out(tmp_path, resume=False, force=False)  # a folder is what a run folder is


# ---------------------------------------------------------------- F3: the OS refusing a write

@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_graph_into_proc_is_a_user_error():
    r = run("graph", MLP, "-o", "/proc/netspec-test-g.svg")
    assert r.exit_code == 1, r.output
    assert "cannot write /proc/netspec-test-g.svg" in r.output and ".tmp" not in r.output


def _refuse_renames(monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src))
    monkeypatch.setattr(os, "replace", refuse)


def test_graph_write_refused_by_the_os_is_exit_1_naming_the_path(tmp_path, monkeypatch):
    _refuse_renames(monkeypatch)
    out = tmp_path / "g.svg"
    r = run("graph", MLP, "-o", out)
    assert r.exit_code == 1, r.output
    assert f"cannot write {out}: Permission denied" in r.output
    assert list(tmp_path.iterdir()) == []


def test_fmt_write_refused_by_the_os_is_exit_1_and_the_file_kept(tmp_path, monkeypatch):
    spec = tmp_path / "ugly.net"
    text = "network A {\n  input x: float32[N, 4]\n  output y = x->Linear(2)\n}\n"
    spec.write_text(text)
    _refuse_renames(monkeypatch)
    r = run("fmt", spec)
    assert r.exit_code == 1, r.output
    assert f"cannot write {spec}: Permission denied" in r.output and "1 failed" in r.output
    assert "0 files reformatted" in r.output
    assert spec.read_text() == text and [p.name for p in tmp_path.iterdir()] == ["ugly.net"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_graph_into_a_read_only_folder_is_exit_1(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        r = run("graph", MLP, "-o", folder / "g.svg")
    finally:
        folder.chmod(0o755)
    assert r.exit_code == 1, r.output
    assert "not writable" in r.output


# ---------------------------------------------------------------- inputs

def test_predict_names_and_skips_a_fifo_image(tmp_path):
    model = tmp_path / "m.onnx"
    assert run("compile", MLP, "-o", model).exit_code == 0
    pipe = fifo(tmp_path / "pf.png")
    r = run("predict", model, pipe)  # would block forever if opened
    assert r.exit_code == 1, r.output
    assert f"cannot read '{pipe}': it is a FIFO" in r.output


def test_fmt_says_a_fifo_is_not_a_regular_file(tmp_path):
    pipe = fifo(tmp_path / "f.net")
    r = run("fmt", pipe)
    assert r.exit_code == 1, r.output
    assert "is a FIFO" in r.output and "not a regular file" in r.output and "no such file" not in r.output
    (tmp_path / "ok.net").write_text("network A {\n    input x: float32[N, 4]\n    output y = x -> Linear(2)\n}\n")
    r = run("fmt", "--check", tmp_path)  # in a folder, a FIFO is passed over, not read
    assert r.exit_code == 0, r.output


def test_weights_that_are_a_link_to_a_special_file_are_named_as_such(tmp_path, node):
    make, _, word = node
    target = make(tmp_path / "node")
    link = tmp_path / "w.safetensors"
    link.symlink_to(target)
    r = run("compile", MLP, "-o", tmp_path / "m.onnx", "--weights", link)
    assert r.exit_code == 1, r.output
    assert f"'{link}' is a {word}" in r.output and "does not exist" not in r.output
    assert "did you mean" not in r.output


def test_missing_weights_never_suggest_their_own_name(tmp_path):
    link = tmp_path / "w.safetensors"
    link.symlink_to(tmp_path / "gone.safetensors")  # dangling: listed in the folder, yet missing
    r = run("compile", MLP, "-o", tmp_path / "m.onnx", "--weights", link)
    assert r.exit_code == 1, r.output
    assert "does not exist" in r.output and f"did you mean '{link}'" not in r.output


def test_a_missing_model_gets_a_did_you_mean(tmp_path):
    model = tmp_path / "mlp.onnx"
    assert run("compile", MLP, "-o", model).exit_code == 0
    wrong = tmp_path / "mlp.onx"
    for command in (("evaluate", MLP, wrong), ("predict", wrong, tmp_path)):
        r = run(*command)
        assert r.exit_code == 1, r.output
        assert f"did you mean '{model}'?" in r.output, command


def test_neighbour_hint_lists_only_the_suffixes_asked_for(tmp_path):
    for name in ("a.onnx", "b.onnx", "notes.txt", ".hidden.onnx"):
        (tmp_path / name).write_text("")
    hint = neighbour_hint(tmp_path / "something-else-entirely.onnx", (".onnx",), ".onnx files")
    assert hint == f"'{tmp_path}' holds: a.onnx, b.onnx"
    assert "a.onnx'" not in neighbour_hint(tmp_path / "a.onnx", (".onnx",), ".onnx files")  # never itself
    assert "does not exist either" in neighbour_hint(tmp_path / "no" / "x.onnx", (".onnx",), ".onnx files")
