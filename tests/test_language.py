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

HEAVY = ("torch", "numpy", "onnx", "onnxruntime", "networkx")  # none is needed to check a spec


def test_check_imports_neither_torch_nor_numpy_nor_onnx():
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from netspec.cli import main
        r = CliRunner().invoke(main, ["check", {str(ROOT / "models/resnet.net:ResNet50")!r}])
        assert r.exit_code == 0, r.output
        assert "25,557,032" in r.output
        for other in ("transformer.net:ViT_B_16", "mobilenetv3.net:MobileNetV3_Large", "lenet5.net"):
            r = CliRunner().invoke(main, ["check", "--brief", {str(ROOT / "models")!r} + "/" + other])
            assert r.exit_code == 0, r.output
        heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_lark_is_imported_for_a_syntax_error_only(tmp_path):
    # The hand-written reader reads a well-formed spec; Lark reports what it gives up on.
    bad = tmp_path / "bad.net"
    bad.write_text("network Bad {\n    input x: float32[N, 4]\n    output y = x -> Linear(4\n}\n")
    code = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from netspec.cli import main
        r = CliRunner().invoke(main, ["check", "--brief", {str(ROOT / "models/resnet.net:ResNet152")!r}])
        assert r.exit_code == 0, r.output
        assert "lark" not in sys.modules
        r = CliRunner().invoke(main, ["check", {str(bad)!r}])
        assert r.exit_code == 1 and "bad.net:3" in r.output, r.output
        assert "lark" in sys.modules
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_import_netspec_is_light():
    code = f"import sys, netspec; heavy = sorted(m for m in {HEAVY!r} if m in sys.modules); assert not heavy, heavy"
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


# ------------------------------------------------------------------ lexical scope, shapes, loops

def test_an_imported_block_resolves_names_in_its_own_file(spec):
    """The importer's own ConvBN (no BatchNorm) must not replace the one mobilenet.net wrote."""
    s = spec(f'''
        from "{ROOT / 'models' / 'mobilenet.net'}" import InvertedResidual
        block ConvBN(width) {{
            out = in -> Conv2d(width, 1)
        }}
        network Net {{
            input x: float32[N, 16, 8, 8]
            h = x -> ConvBN(16)
            output y = h -> InvertedResidual(16, 1, 6) -> GlobalAvgPool -> Flatten
        }}
    ''')
    ops = [op for op, _ in layers(s).values()]
    assert ops.count("BatchNorm2d") == 3 and "Add" in ops
    assert layers(s)["h.0"][0] == "Conv2d"


def test_a_block_reads_its_inputs_shape(spec):
    s = spec('''
        block Proj(width) {
            c = in.shape[1]
            out = c == width ? in -> ReLU : in -> Conv2d(width, 1)
        }
        network Net {
            input x: float32[N, 8, 4, 4]
            output y = x -> Proj(8) -> Proj(16) -> GlobalAvgPool -> Flatten -> Linear(x.shape[-1])
        }
    ''')
    assert [op for op, _ in layers(s).values()] == ["ReLU", "Conv2d", "GlobalAvgPool", "Flatten", "Linear"]
    assert shapes(s) == {"y": "float32[N,4]"}


def test_comprehensions_run_layers_in_order_and_bound_their_size(spec):
    s = spec('''
        network Net(widths = [4, 8, 16]) {
            input x: float32[N, 2]
            output y = x -> [Linear(w) -> ReLU for w in widths if w > 4] -> Linear(len(widths))
        }
    ''')
    assert [r["shape"] for r in s.rows] == ["[N,8]", "[N,8]", "[N,16]", "[N,16]", "[N,3]"]
    from netspec.errors import LimitProblem
    with pytest.raises(LimitProblem, match="range"):
        spec('''
            network Net(n = len(range(1000000000))) {
                input x: float32[N, 2]
                output y = x -> Linear(n)
            }
        ''')


def test_a_loop_variable_may_not_shadow_a_name(spec):
    with pytest.raises(NameProblem, match="loop variable"):
        spec('''
            network Net(w = 3) {
                input x: float32[N, 2]
                output y = x -> [Linear(w) for w in [1, 2]]
            }
        ''')


def test_assert_passes_silently_and_fails_with_its_message(spec):
    text = '''
        block B(groups) {
            assert in.shape[1] % groups == 0, "channels must divide into groups"
            out = in -> Conv2d(8, 1, groups=groups)
        }
        network Net(g = 2) {
            input x: float32[N, 8, 4, 4]
            output y = x -> B(g) -> Flatten
        }
    '''
    assert spec(text).parameters == 8 * 4 + 8
    with pytest.raises(ParamProblem, match="channels must divide into groups"):
        spec(text.replace("g = 2", "g = 3"))


def test_discarded_outputs_need_no_use(spec):
    s = spec('''
        network Net {
            input x: float32[N, 8]
            a, _ = x -> Split([4, 4], dim=1)
            output y = a -> Linear(2)
        }
    ''')
    assert list(layers(s)) == ["a", "y"]


def test_layer_sequences_are_values(spec):
    s = spec('''
        network Net {
            input x: float32[N, 8]
            stem = Linear(4) -> ReLU
            output y = x -> stem -> Linear(2)
        }
    ''')
    assert [op for op, _ in layers(s).values()] == ["Linear", "ReLU", "Linear"]


def test_list_slices_and_value_functions(spec):
    s = spec('''
        network Net(widths = [4, 8, 16, 32]) {
            input x: float32[N, 2]
            output y = x -> Linear(max(widths[1:3]) + min(3, 5) + round(0.6) + len("ab"))
        }
    ''')
    assert shapes(s) == {"y": "float32[N,22]"}


# ------------------------------------------------------------------ hostile specs (issue 5)

def _refused(path, cls=None):
    from netspec.errors import NetspecError
    with pytest.raises(cls or NetspecError) as e:
        load(path)
    return e.value.render()


def test_a_fifo_or_device_as_the_spec_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "pipe.net"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(fifo)
    link = tmp_path / "zero.net"
    link.symlink_to("/dev/zero")
    assert "not a regular file" in _refused(link)
    assert "not a regular file" in _refused("/dev/zero")


def test_an_oversized_spec_is_refused_by_its_size(tmp_path):
    from netspec.errors import LimitProblem
    from netspec.loader import MAX_SPEC_BYTES
    big = tmp_path / "big.net"
    with open(big, "wb") as f:
        f.truncate(MAX_SPEC_BYTES + 1)
    assert "too large for a spec" in _refused(big, LimitProblem)


def test_a_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "bom.net"
    p.write_bytes(b"\xef\xbb\xbfnetwork N {\n    input x: float32[N, 4]\n    output y = x -> Linear(2)\n}\n")
    assert load(p).parameters == 10


def test_blocks_doubling_forty_times_are_refused_by_counting(tmp_path):
    import time
    from netspec.errors import LimitProblem
    text = "block B0() {\n    out = in -> ReLU\n}\n" + "".join(
        f"block B{i}() {{\n    out = in -> B{i - 1}() -> B{i - 1}()\n}}\n" for i in range(1, 41))
    text += "network Net {\n    input x: float32[N, 8]\n    output y = x -> B40()\n}\n"
    assert len(text) < 2100
    (tmp_path / "double.net").write_text(text, encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(LimitProblem, match="grows past 200,000 layers"):
        load(tmp_path / "double.net")
    assert time.perf_counter() - start < 20  # a hang bound, not a benchmark: bench/ measures it


def test_a_large_network_counted_with_placeholders_is_then_built_in_full(spec, monkeypatch):
    from netspec import expansion
    monkeypatch.setattr(expansion, "STUB_SIZE", 2)
    s = spec('''
        block B() {
            out = in -> Linear(4) -> ReLU
        }
        network Net {
            input x: float32[N, 4]
            output y = x -> B() * 5
        }
    ''')
    assert len(s.rows) == 10 and not any(n.startswith("~") for n in s.graph.nodes)


def test_imports_are_confined_unless_widened(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "lib.net").write_text("block B() {\n    out = in -> ReLU\n}\n", encoding="utf-8")
    inside = tmp_path / "proj"
    inside.mkdir()
    main = inside / "main.net"
    main.write_text('from "../outside/lib.net" import B\nnetwork N {\n    input x: float32[N, 4]\n'
                    '    output y = x -> B()\n}\n', encoding="utf-8")
    assert "outside the spec's folder and the zoo" in _refused(main, NameProblem)
    monkeypatch.setenv("NETSPEC_IMPORT_PATH", str(outside))
    assert load(main).rows[0]["op"] == "ReLU"


def test_a_file_that_is_not_a_spec_is_quoted_by_one_line_at_most(tmp_path):
    (tmp_path / "secret.txt").write_text("root:x:0:0:" + "s" * 500 + "\nsecond line\n", encoding="utf-8")
    main = tmp_path / "main.net"
    main.write_text('import "secret.txt"\n', encoding="utf-8")
    message = _refused(main)
    assert "second line" not in message
    assert max(len(line) for line in message.splitlines()) < 200


def test_a_huge_undefined_name_is_quoted_in_part(spec):
    with pytest.raises(NameProblem) as e:
        spec("network N {\n    input x: float32[N, 4]\n    output y = x -> " + "q" * 1_000_000 + "\n}\n")
    assert len(e.value.render()) < 2000


# ------------------------------------------------------------------ the command line (issue 11)

def test_two_network_selections_are_a_usage_error():
    from click.testing import CliRunner
    from netspec.cli import main
    r = CliRunner().invoke(main, ["check", f"{ROOT / 'models' / 'resnet.net'}:ResNet50", "--network", "ResNet18"])
    assert r.exit_code == 2
    assert "'ResNet50'" in r.stderr and "'ResNet18'" in r.stderr
    same = CliRunner().invoke(main, ["check", f"{ROOT / 'models' / 'resnet.net'}:ResNet18", "-n", "ResNet18", "--brief"])
    assert same.exit_code == 0, same.output


@pytest.mark.parametrize("value, words", [("2.5", "must be an integer"), ("0", "must be at least 1"),
                                          ('"two"', "must be an integer")])
def test_a_bad_set_value_is_reported_at_the_option(value, words):
    from click.testing import CliRunner
    from netspec.cli import main
    r = CliRunner().invoke(main, ["check", str(ROOT / "examples" / "cats_vs_dogs.net"), "--set", f"classes={value}"])
    assert r.exit_code == 1
    first, note = r.stderr.splitlines()[:2]
    assert first == f"error: --set classes={value}: Linear's 'out_features' {words}"
    assert note.endswith("note: the value is used here") and "cats_vs_dogs.net:" in note


def test_python_values_are_passed_as_values(spec, tmp_path):
    s = load(ROOT / "models" / "resnet.net", "ResNet", params={"depths": [1, 1, 1, 1], "classes": 7})
    assert shapes(s) == {"logits": "float32[N,7]"}
    with pytest.raises(ParamProblem, match="not dict"):
        load(ROOT / "models" / "resnet.net", "ResNet", params={"classes": {"a": 1}})


def test_params_are_learnable_layers_named_after_their_declaration(spec):
    s = spec('''
        network Net {
            input x: float32[N, 4]
            param scale: float32[1, 4] = ones
            output y = Mul(x, scale) -> Linear(2)
        }
    ''')
    assert layers(s)["scale"] == ("Param", "[1,4]")
    assert s.graph.nodes["scale"]["params"].init == "ones"
    from netspec.errors import ShapeProblem
    with pytest.raises(ShapeProblem, match="fixed dims"):
        spec('''
            network Net {
                input x: float32[N, 4]
                param bad: float32[N, 4]
                output y = Mul(x, bad)
            }
        ''')
    with pytest.raises(ParamProblem, match="initial value"):
        spec('''
            network Net {
                input x: float32[N, 4]
                param bad: float32[1, 4] = gaussian
                output y = Mul(x, bad)
            }
        ''')


def test_tensor_slices_follow_python_and_refuse_plain_indices(spec):
    s = spec('''
        network Net {
            input x: float32[N, 3, 10, 10]
            output y = x[:, 1:, 2:-2, ::3]
        }
    ''')
    assert shapes(s) == {"y": "float32[N,2,6,4]"}
    with pytest.raises(ParamProblem, match="Select"):
        spec('''
            network Net {
                input x: float32[N, 3, 10, 10]
                output y = x[:, 0]
            }
        ''')


def test_nested_lists_are_bounded_in_all(spec):
    from netspec.errors import LimitProblem
    with pytest.raises(LimitProblem, match="in all"):
        spec('''
            network Net(rows = [[0] * 100000 for i in range(100000)]) {
                input x: float32[N, 2]
                output y = x -> Linear(len(rows))
            }
        ''')


def test_a_reversing_slice_starts_from_the_end(spec):
    s = spec('''
        network Net {
            input x: float32[N, 5]
            output y = x[:, ::-2]
        }
    ''')
    assert shapes(s) == {"y": "float32[N,3]"}
    (name,) = layers(s)
    assert s.graph.nodes[name]["params"].starts == [-1]

