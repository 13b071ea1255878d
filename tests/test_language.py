"""Every construct of the language, parsed, elaborated and shape-checked from small inline specs.

The examples of docs/language.md are here too (the DOC_* cases), so the reference cannot rot.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netspec.errors import GraphProblem, NameProblem, ParamProblem
from netspec.graph import Ref, add_input, add_op, add_output, new_graph
from netspec.infer import infer
from netspec.ops import REGISTRY, get_op
from netspec.spec import load
from netspec.types import TensorType

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spec(tmp_path):
    """Write a spec (and any extra files) into tmp_path and load it."""
    def make(text: str, network: str | None = None, files: dict | None = None):
        files = files or {}
        for name, body in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(textwrap.dedent(body), encoding="utf-8")
        path = tmp_path / "main.net"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return load(path, network)
    return make


def layers(s) -> dict[str, tuple[str, str]]:
    """layer name -> (op, output shapes)"""
    return {r["name"]: (r["op"], r["shape"]) for r in s.rows}


def shapes(s) -> dict[str, str]:
    return {n: t.full() for n, t in s.outputs}


# ------------------------------------------------------------------ chains and naming

def test_chain_names_its_layers_after_the_tensor(spec):
    s = spec("""
        network Net {
            input x: float32[N, 8]
            h = x -> Linear(16) -> ReLU
            output y = h -> Linear(4)
        }
    """)
    assert layers(s) == {"h.0": ("Linear", "[N,16]"), "h.1": ("ReLU", "[N,16]"), "y": ("Linear", "[N,4]")}
    assert shapes(s) == {"y": "float32[N,4]"}
    assert s.parameters == 8 * 16 + 16 + 16 * 4 + 4


def test_repetition_and_as(spec):
    s = spec("""
        network Net {
            input x: float32[N, 8]
            h = x -> Linear(8) * 3 -> Linear(8) as proj
            output y = h -> ReLU
        }
    """)
    assert list(layers(s)) == ["h.0", "h.1", "h.2", "proj", "y"]


def test_block_defaults_arithmetic_and_out_numbering(spec):
    s = spec("""
        block Mlp(width, mult = 2) {
            out = in -> Linear(width * mult) -> ReLU -> Linear(width)
        }
        network Net {
            input x: float32[N, 8]
            output y = x -> Mlp(8) -> Mlp(4, mult=3)
        }
    """)
    # A block's `out` chain is numbered right under the block's own name.
    assert layers(s) == {"y.0.0": ("Linear", "[N,16]"), "y.0.1": ("ReLU", "[N,16]"), "y.0.2": ("Linear", "[N,8]"),
                         "y.1.0": ("Linear", "[N,12]"), "y.1.1": ("ReLU", "[N,12]"), "y.1.2": ("Linear", "[N,4]")}


def test_nested_blocks_with_several_inputs_and_outputs(spec):
    s = spec("""
        block Gate() {
            input value, gate
            out = value * (gate -> Sigmoid)
        }
        block Two() {
            output left = in -> Linear(3)
            output right = in -> Linear(5)
        }
        block Both() {
            l, r = in -> Two()
            out = Concat(l, r, dim=1)
        }
        network Net {
            input x: float32[N, 8], g: float32[N, 8]
            gated = Gate(x, g)
            output y = gated -> Both()
        }
    """)
    assert layers(s) == {"gated.0": ("Sigmoid", "[N,8]"), "gated.1": ("Mul", "[N,8]"),
                         "y.l_r.left": ("Linear", "[N,3]"), "y.l_r.right": ("Linear", "[N,5]"),
                         "y.0": ("Concat", "[N,8]")}


def test_tensor_arithmetic_is_add_and_mul(spec):
    s = spec("""
        network Net {
            input a: float32[N, 4], b: float32[N, 4]
            output y = a + b * a
        }
    """)
    assert sorted(op for op, _ in layers(s).values()) == ["Add", "Mul"]


# ------------------------------------------------------------------ compile-time values

@pytest.mark.parametrize("deep, expected", [("true", ["h", "y.0"]), ("false", ["y.0"])])
def test_if_else_and_ternary(spec, deep, expected):
    s = spec(f"""
        network Net(deep = {deep}) {{
            input x: float32[N, 8]
            if deep {{
                h = x -> Linear(8)
            }} else {{
                h = x
            }}
            output y = deep and 2 > 1 ? (h -> ReLU) : (h -> Sigmoid)
        }}
    """)
    assert list(layers(s)) == expected
    assert layers(s)["y.0"][0] == ("ReLU" if deep == "true" else "Sigmoid")


def test_lists_indexing_and_arithmetic(spec):
    s = spec("""
        network Net(widths = [16, 32, 64]) {
            input x: float32[N, 3, 8, 8]
            output y = x -> Conv2d(widths[0], 3) -> Conv2d(widths[-1] // 2 + 2 ** 2 - 3 % 2, 1)
                         -> Reshape([35 * 6, -1])
        }
    """)
    assert shapes(s) == {"y": "float32[N,210,6]"}
    assert layers(s)["y.1"] == ("Conv2d", "[N,35,6,6]")


def test_split_into_several_names(spec):
    s = spec("""
        network Net {
            input x: float32[N, 8]
            a, b = x -> Split([3, 5], dim=1)
            output y = Concat(b, a, dim=1)
        }
    """)
    assert layers(s)["a_b"] == ("Split", "[N,3] [N,5]")
    assert shapes(s) == {"y": "float32[N,8]"}


def test_symbolic_dims_flow_through(spec):
    s = spec("""
        network Net {
            input tokens: int64[B, T]
            output y = tokens -> Embedding(100, 16) -> Linear(8)
        }
    """)
    assert shapes(s) == {"y": "float32[B,T,8]"}


# ------------------------------------------------------------------ files and networks

LIB = """
    # Imports are relative to the importing file.
    import "parts.net"
    block Head(classes) {
        out = in -> Linear(classes)
    }
"""
PARTS = """
    block Stem() {
        out = in -> Linear(16) -> ReLU
    }
"""


def test_import_all(spec):
    s = spec("""
        import "sub/lib.net"
        network Net {
            input x: float32[N, 8]
            output y = x -> Stem() -> Head(3)
        }
    """, files={"sub/lib.net": LIB, "sub/parts.net": PARTS})
    assert shapes(s) == {"y": "float32[N,3]"}


def test_import_from_brings_only_the_names_given(spec):
    files = {"sub/lib.net": LIB, "sub/parts.net": PARTS}
    s = spec("""
        from "sub/lib.net" import Head
        network Net {
            input x: float32[N, 8]
            output y = x -> Head(5)
        }
    """, files=files)
    assert shapes(s) == {"y": "float32[N,5]"}
    with pytest.raises(NameProblem, match="unknown op or block 'Stem'"):
        spec("""
            from "sub/lib.net" import Head
            network Net {
                input x: float32[N, 8]
                output y = x -> Stem() -> Head(5)
            }
        """, files=files)


def test_network_aliases_and_selection(spec):
    text = """
        network Mlp(hidden = 32, classes = 10) {
            input x: float32[N, 8]
            output logits = x -> Linear(hidden) -> ReLU -> Linear(classes)
        }
        network Small = Mlp(hidden=4)
        network Wide = Mlp(64, classes=3)
    """
    small = spec(text, "Small")
    assert small.name == "Small"
    assert small.parameters == 8 * 4 + 4 + 4 * 10 + 10
    wide = spec(text, "Wide")
    assert shapes(wide) == {"logits": "float32[N,3]"}
    assert wide.parameters == 8 * 64 + 64 + 64 * 3 + 3
    with pytest.raises(NameProblem, match="defines 3 networks"):
        spec(text)


def test_file_colon_network(tmp_path):
    path = tmp_path / "two.net"
    path.write_text(textwrap.dedent("""
        network A {
            input x: float32[N, 8]
            output y = x -> Linear(2)
        }
        network B {
            input x: float32[N, 8]
            output y = x -> Linear(3)
        }
    """), encoding="utf-8")
    assert load(f"{path}:B").name == "B"
    assert load(path, "A").outputs[0][1].shape == ("N", 2)


# ------------------------------------------------------------------ losses, targets, training

def test_targets_and_weighted_losses_googlenet_style(spec):
    s = spec("""
        network Net {
            input x: float32[N, 3, 16, 16]
            target label: int64[N]
            h = x -> Conv2d(8, 3, padding=1) -> ReLU
            output aux = h -> GlobalAvgPool -> Flatten -> Linear(10)
            output logits = h -> Conv2d(16, 3, stride=2) -> GlobalAvgPool -> Flatten -> Linear(10)
            loss CrossEntropy(logits, label)
            loss CrossEntropy(aux, label, weight=0.3, label_smoothing=0.1)
        }
    """)
    g = s.graph
    losses = [g.nodes[n] for n in g.graph["losses"]]
    assert [(n["args"][0].node, n["weight"]) for n in losses] == [("logits.3", 1.0), ("aux.2", 0.3)]
    assert losses[1]["params"].label_smoothing == 0.1
    assert [(n, t.full()) for n, t in s.targets] == [("label", "int64[N]")]


def test_undeclared_target_takes_its_type_from_the_loss(spec):
    s = spec("""
        network Net {
            input x: float32[N, 8]
            output y = x -> Linear(1)
        }
        loss MSE(y, value)
    """)
    assert [(n, t.full()) for n, t in s.targets] == [("value", "float32[N,1]")]


def test_train_block_reaches_train_config(spec):
    s = spec("""
        network Net {
            input x: float32[N, 8]
            output y = x -> Linear(4)
        }
        loss CrossEntropy(y, label)
        train {
            optimizer = SGD(lr=0.05, momentum=0.9, nesterov=true)
            schedule = MultiStep(milestones=[3, 6], gamma=0.5)
            epochs = 8
            batch_size = 32
            grad_clip = 1.5
            device = "cpu"
        }
    """)
    c = s.train_config
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.momentum, c.optimizer.nesterov) == ("SGD", 0.05, 0.9, True)
    assert (c.schedule.name, c.schedule.milestones, c.schedule.gamma) == ("MultiStep", (3, 6), 0.5)
    assert (c.epochs, c.batch_size, c.grad_clip, c.device) == (8, 32, 1.5, "cpu")


def test_train_block_inside_a_network_wins_and_bare_names_work(spec):
    s = spec("""
        network Net {
            input x: float32[N, 8]
            output y = x -> Linear(4)
            train {
                optimizer = AdamW
                schedule = Cosine
            }
        }
        train {
            epochs = 99
        }
    """)
    c = s.train_config
    assert (c.optimizer.name, c.schedule.name, c.epochs) == ("AdamW", "Cosine", 10)


# ------------------------------------------------------------------ the zoo

@pytest.mark.parametrize("network, count", [("ResNet18", 11_689_512), ("ResNet34", 21_797_672),
                                            ("ResNet50", 25_557_032), ("ResNet101", 44_549_160),
                                            ("ResNet152", 60_192_808)])
def test_resnets_match_torchvision_parameter_counts(network, count):
    s = load(ROOT / f"models/resnet.net:{network}")
    assert s.parameters == count
    assert shapes(s) == {"logits": "float32[N,1000]"}


# ------------------------------------------------------------------ graph-level checks

def test_the_language_cannot_express_a_cycle_and_infer_refuses_one():
    # Names are bound once and only after their value is built, so a spec cannot refer to a
    # tensor that is computed later: a cycle has no spelling. Graphs built by hand can have one.
    g = new_graph("Cyclic", "<test>")
    x = add_input(g, "x", TensorType("float32", ("N", 4)), None)
    relu = get_op("ReLU")
    add_op(g, "a", "ReLU", relu.Params(), [x], None, {}, ())
    add_op(g, "b", "Add", get_op("Add").Params(), [Ref("a", 0), Ref("a", 0)], None, {}, ())
    g.add_edge("b", "a")
    add_output(g, "y", Ref("b", 0), None)
    with pytest.raises(GraphProblem, match="cycle"):
        infer(g)


def test_a_later_name_is_not_visible_earlier(spec):
    with pytest.raises(NameProblem, match="undefined name 'later'"):
        spec("""
            network Net {
                input x: float32[N, 4]
                early = Add(x, later)
                later = early -> ReLU
                output y = later
            }
        """)


def test_repetition_count_zero_passes_the_input_through(spec):
    s = spec("""
        block Stage(n) {
            out = in -> Linear(4) -> ReLU * (n - 1)
        }
        network Net {
            input x: float32[N, 4]
            output y = x -> Stage(1) -> Stage(3)
        }
    """)
    assert [r["op"] for r in s.rows] == ["Linear", "Linear", "ReLU", "ReLU"]


def test_repetition_count_must_not_be_negative(spec):
    with pytest.raises(ParamProblem, match="between 0 and 10,000, got -1"):
        spec("""
            network Net {
                input x: float32[N, 4]
                output y = x -> ReLU * -1
            }
        """)


# ------------------------------------------------------------------ check needs no torch

def test_check_imports_neither_torch_nor_onnxruntime():
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from netspec.cli import main
        r = CliRunner().invoke(main, ["check", {str(ROOT / "models/resnet.net:ResNet50")!r}])
        assert r.exit_code == 0, r.output
        assert "25,557,032" in r.output
        heavy = sorted(m for m in ("torch", "onnxruntime") if m in sys.modules)
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_ternary_can_choose_a_layer(spec):
    s = spec("""
        network Net(smooth = true) {
            input x: float32[N, 8]
            output y = x -> Linear(4) -> (smooth ? GELU : ReLU)
        }
    """)
    assert [op for op, _ in layers(s).values()] == ["Linear", "GELU"]


# ------------------------------------------------------------------ docs/language.md

DOC = ROOT / "docs" / "language.md"
REGEN = os.environ.get("NETSPEC_REGEN") == "1"


def _doc_examples() -> list[str]:
    return re.findall(r"```netspec\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_doc_has_examples():
    assert len(_doc_examples()) >= 8


@pytest.mark.parametrize("index", range(len(_doc_examples())))
def test_doc_examples_check(index, tmp_path):
    text = _doc_examples()[index]
    path = tmp_path / "example.net"
    path.write_text(text, encoding="utf-8")
    names = re.findall(r"^network (\w+)", text, re.M)
    assert names, "a doc example defines a network"
    for name in names:
        s = load(path, name)
        assert s.outputs and s.rows


def _default(field) -> str:
    from pydantic_core import PydanticUndefined
    v = field.default
    if v is PydanticUndefined:
        return "(required)"
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(str(x) for x in v) + "]"
    if hasattr(type(v), "model_fields") and "name" not in type(v).model_fields:
        return "[]" if not v else str(v)  # augment: written as a list of augmentations
    if hasattr(type(v), "model_fields"):
        args = ", ".join(f"{k}={_default_value(getattr(v, k))}" for k in type(v).model_fields if k != "name")
        return f"{v.name}({args})"
    return str(v)


def _default_value(v) -> str:
    class F:
        default = v
    return _default(F)


def op_table() -> str:
    rows = ["| op | positional | other parameters (defaults) | tensor inputs |", "| --- | --- | --- | --- |"]
    for name, op in sorted(REGISTRY.items(), key=lambda kv: (kv[1].kind == "loss", kv[0])):
        fields = op.Params.model_fields
        pos = ", ".join(f"`{p}`" if fields[p].is_required() else f"`{p}={_default(fields[p])}`"
                        for p in op.positional)
        rest = ", ".join(f"`{f}` (required)" if fi.is_required() else f"`{f}={_default(fi)}`"
                         for f, fi in fields.items() if f not in op.positional)
        lo, hi = op.arity
        ins = str(lo) if lo == hi else (f"{lo} or more" if hi is None else f"{lo} to {hi}")
        if op.kind == "loss":
            ins = "prediction, target (a loss)"
        rows.append(f"| `{name}` | {pos or '-'} | {rest or '-'} | {ins} |")
    return "\n".join(rows)


def train_table() -> str:
    from netspec.trainconfig import OPTIMIZERS, SCHEDULES, TrainConfig
    rows = ["| setting | default |", "| --- | --- |"]
    rows += [f"| `{k}` | {'none' if f.default is None else '`' + _default(f) + '`'} |"
             for k, f in TrainConfig.model_fields.items()]
    rows += ["", "| optimizer / schedule | parameters (defaults) |", "| --- | --- |"]
    for name, cls in {**OPTIMIZERS, **SCHEDULES}.items():
        params = ", ".join(f"`{k}` (required)" if f.is_required() else f"`{k}={_default(f)}`"
                           for k, f in cls.model_fields.items() if k != "name")
        rows.append(f"| `{name}` | {params} |")
    return "\n".join(rows)


@pytest.mark.parametrize("marker, make", [("op-table", op_table), ("train-table", train_table)])
def test_doc_tables_match_the_code(marker, make):
    text = DOC.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- {marker}: [^\n]*-->\n)(.*?)(<!-- end {marker} -->)", re.S)
    m = pattern.search(text)
    assert m, f"docs/language.md lost its {marker} markers"
    table = make() + "\n"
    if REGEN and m.group(2) != table:
        DOC.write_text(text[:m.start(2)] + table + text[m.end(2):], encoding="utf-8")
        text = DOC.read_text(encoding="utf-8")
        m = pattern.search(text)
    assert m.group(2) == table, f"the {marker} is stale: run NETSPEC_REGEN=1 pytest {__file__}"


ZOO_LIKE = """
    network Net(classes = 10) {
        input x: float32[N, 8]
        output logits = x -> Linear(classes)
    }
    loss CrossEntropy(logits, label)
    train { epochs = 7 }
"""


def test_an_imported_network_keeps_its_files_loss_and_train_block(spec):
    s = spec("""
        import "zoo.net"
        network Small = Net(classes=3)
    """, "Small", files={"zoo.net": ZOO_LIKE})
    assert [s.graph.nodes[n]["op"] for n in s.graph.graph["losses"]] == ["CrossEntropy"]
    assert s.train_config.epochs == 7


def test_the_importing_files_loss_and_train_block_take_precedence(spec):
    s = spec("""
        import "zoo.net"
        network Small = Net(classes=3)
        loss CrossEntropy(logits, label, label_smoothing=0.1)
        train { epochs = 2 }
    """, "Small", files={"zoo.net": ZOO_LIKE})
    losses = [s.graph.nodes[n] for n in s.graph.graph["losses"]]
    assert [n["params"].label_smoothing for n in losses] == [0.1]
    assert s.train_config.epochs == 2
