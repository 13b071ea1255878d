"""Mangled specs: whatever the text, netspec answers with a located NetspecError or a model.

Real specs are cut and spliced with tokens of the language; every result must either check
and lower to ONNX, or raise NetspecError with a rendered message. Anything else (an
AttributeError, a RecursionError, a pydantic ValidationError escaping) is a bug.
"""

import tempfile
from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.errors import NetspecError

ROOT = Path(__file__).resolve().parent.parent
# None of these imports another file, so each can be mangled on its own.
SOURCES = [ROOT / "models" / "lenet5.net", ROOT / "models" / "mlp.net", ROOT / "examples" / "cats_vs_dogs.net",
           ROOT / "models" / "resnet.net"]
TOKENS = ["(", ")", "{", "}", "[", "]", ",", "->", "=", "*", "0", "-1", "1e9", "x", "in", "out", "true", "?",
          ":", '"s"', "Add", "Conv2d", "block", "network", "loss", "as", ".", "**", "//", "if", "else",
          "input", "output", "N", "10000", "2.5", "Concat(x, x)", "Split(2)", "image", "#", "\n"]

edit = st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(["cut", "insert", "number"]),
                 st.integers(1, 8), st.sampled_from(TOKENS))


def mangle(text: str, edits) -> str:
    for where, kind, n, token in edits:
        pos = int(where * len(text))
        if kind == "cut":
            text = text[:pos] + text[pos + n:]
        elif kind == "insert":
            text = f"{text[:pos]} {token} {text[pos:]}"
        else:
            text = text[:pos] + str([0, 1, 3, 64, 100000, -2, 7][n % 7]) + text[pos + 1:]
    return text


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(SOURCES), edits=st.lists(edit, min_size=1, max_size=3))
def test_a_mangled_spec_loads_or_fails_cleanly(source, edits):
    text = mangle(source.read_text(encoding="utf-8"), edits)
    # In a folder of its own: other tests list models/ and examples/ while this one runs.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / source.name
        path.write_text(text, encoding="utf-8")
        try:
            spec = netspec.load(f"{path}:ResNet18" if source.stem == "resnet" else path)
        except NetspecError as e:
            assert "error: " in e.render()
            return
    if spec.parameters < 5_000_000:
        model = spec.to_onnx()
        onnx.checker.check_model(model, full_check=True)
