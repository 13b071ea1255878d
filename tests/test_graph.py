"""`netspec graph`: every format, the layout's promises, --depth, errors, and the HTML page in a
real headless browser where one is installed."""

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from netspec import draw
from netspec.cli import main
from netspec.spec import load

ROOT = Path(__file__).resolve().parent.parent
GOOGLENET = str(ROOT / "models" / "googlenet.net") + ":GoogLeNet"
RESNET152 = str(ROOT / "models" / "resnet.net") + ":ResNet152"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def googlenet():
    return load(GOOGLENET)


@pytest.fixture(scope="module")
def googlenet_layout(googlenet):
    view = draw.build_view(googlenet)
    return view, draw.layout(view)


def run(*args):
    return CliRunner().invoke(main, ["graph", *map(str, args)])


def test_svg_has_every_layer_and_shapes_on_edges(tmp_path, googlenet):
    out = tmp_path / "g.svg"
    r = run(GOOGLENET, "-o", out)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: GoogLeNet, 215 layers" in r.stdout
    root = ET.parse(out).getroot()
    texts = [t.text for t in root.iter(SVG + "text")]
    for row in googlenet.rows:
        assert row["name"] in texts
    assert "[N,64,112,112]" in texts and "[N,1024,7,7]" in texts  # edge labels
    assert "Concat" in texts and "output aux1" in texts and "loss CrossEntropy x 0.3" in texts
    assert "target label: int64[N]" in texts
    assert "x3.5: Inception" in texts  # blocks are clusters
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary left


def test_boxes_never_overlap_and_sit_in_their_blocks_only(googlenet_layout):
    view, placed = googlenet_layout
    rects = list(placed.boxes.items())
    for i, (a, (ax, ay, aw, ah)) in enumerate(rects):
        for b, (bx, by, bw, bh) in rects[i + 1:]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)
    for bid, (x, y, w, h) in placed.boxes.items():
        chain = set()
        c = view.boxes[bid].cluster
        while c:
            chain.add(c)
            c = view.clusters[c].parent
        for cid, (cx, cy, cw, ch) in placed.clusters.items():
            inside = cx <= x and x + w <= cx + cw and cy <= y and y + h <= cy + ch
            apart = x + w <= cx or cx + cw <= x or y + h <= cy or cy + ch <= y
            assert inside if cid in chain else apart, (bid, cid)


def test_arrows_start_and_end_at_their_boxes(googlenet_layout):
    view, placed = googlenet_layout
    assert len(placed.arrows) == len(view.arrows) > 215
    for a, pts in zip(view.arrows, placed.arrows):
        sx, sy, sw, sh = placed.boxes[a.src]
        dx, dy, dw, dh = placed.boxes[a.dst]
        assert pts[0] == (sx + sw / 2, sy + sh)
        end_x, end_y = pts[-1]
        assert (end_y == dy and dx <= end_x <= dx + dw) or (end_x == dx and dy <= end_y <= dy + dh)


def test_png_dot_and_html(tmp_path):
    for suffix in (".dot", ".html"):
        assert run(GOOGLENET, "-o", tmp_path / f"g{suffix}").exit_code == 0
    assert run(GOOGLENET, "--depth", 1, "-o", tmp_path / "g.png").exit_code == 0
    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG" and 800 < im.width < 2000 and 2500 < im.height < 4000
    dot = (tmp_path / "g.dot").read_text(encoding="utf-8")
    assert dot.startswith('digraph "GoogLeNet') and 'subgraph "cluster_x3.5"' in dot
    assert '"x3.5.0" -> "x3.6.b1.0" [label="[N,256,28,28]"];' in dot
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    # Self-contained: nothing fetched from anywhere, the only URL is the SVG namespace.
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]
    assert "<script src" not in page and "<link" not in page
    data = json.loads(re.search(r"const NODES = (.*);\n", page).group(1))
    assert data["x3.5.0"]["op"] == "Concat" and data["x3.5.0"]["outputs"] == ["float32[N,256,28,28]"]
    assert data["x3.5.0"]["source"] == "out = Concat(b1, b2, b3, b4)"


def test_depth_collapses_blocks(tmp_path):
    spec = load(RESNET152)
    view = draw.build_view(spec, depth=1)
    stages = [b for b in view.boxes.values() if b.kind == "block"]
    assert [b.id for b in stages] == ["x.4", "x.5", "x.6", "x.7"]
    assert sum(b.info["layers"] for b in stages) == 32 + 82 + 362 + 32  # a projecting unit has 12 layers, the others 10
    assert sum(b.info["parameters"] for b in stages) + sum(
        r["parameters"] for r in spec.rows if not r["name"].startswith(("x.4", "x.5", "x.6", "x.7"))) == 60_192_808
    assert [a.label for a in view.arrows if a.src == "x.5" and a.dst == "x.6"] == ["[N,512,28,28]"]
    assert not view.clusters
    two = draw.build_view(spec, depth=2)
    assert len([b for b in two.boxes.values() if b.kind == "block"]) == 3 + 8 + 36 + 3
    assert set(two.clusters) == {"x.4", "x.5", "x.6", "x.7"}
    assert run(RESNET152, "--depth", 1, "-o", tmp_path / "r.png").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["-o", "g.pdf"], "unknown format '.pdf'"),
    (["-o", "missing/g.svg"], "the folder 'missing' does not exist"),
    (["--depth", "0", "-o", "g.svg"], "--depth must be 1 or more, got 0"),
])
def test_bad_requests_are_exit_1(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = run(GOOGLENET, *args)
    assert r.exit_code == 1 and message in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_graph_fmt_and_lsp_do_not_import_torch(tmp_path):
    code = ("import sys\nfrom netspec.cli import main\n"
            f"for args in (['graph', {GOOGLENET!r}, '--depth', '1', '-o', {str(tmp_path / 'g.html')!r}],"
            f" ['fmt', '--check', {str(ROOT / 'models' / 'mlp.net')!r}]):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "import netspec.lsp.server\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime')))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


# Clicks a box and zooms the page, then writes what the page shows where --dump-dom can read it.
PROBE = """<script>
window.addEventListener("load", () => {
  const g = [...document.querySelectorAll(".node")].find((n) => n.dataset.id === "x3.5.0");
  const before = getComputedStyle(svg).transform;
  g.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  stage.dispatchEvent(new WheelEvent("wheel", { deltaY: -400, clientX: 100, clientY: 100, bubbles: true, cancelable: true }));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    title: document.getElementById("selected-title")?.textContent,
    outputs: document.querySelector("#details .outputs")?.textContent,
    inputs: document.querySelector("#details .inputs")?.innerHTML,
    source: document.querySelector("#details .source")?.textContent,
    spec: document.querySelector("#details .spec")?.textContent,
    selected: document.querySelectorAll(".node.selected").length,
    zoomed: getComputedStyle(svg).transform !== before,
  });
  const find = document.getElementById("find");
  find.value = "aux2.3";
  find.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  out.dataset.found = document.getElementById("selected-title")?.textContent;
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(_browser() is None, reason="no headless browser (chromium) installed")
def test_html_page_in_a_headless_browser(tmp_path):
    page = tmp_path / "g.html"
    assert run(GOOGLENET, "-o", page).exit_code == 0
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    out = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe" data-found="([^"]*)">(.*?)</pre>', out.stdout, re.S)
    assert found, out.stderr[-2000:]
    assert found.group(1) == "aux2.3"  # the find box selected the layer
    shown = json.loads(found.group(2).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                       .replace("&amp;", "&"))
    assert shown["title"] == "x3.5.0" and shown["selected"] == 1
    assert shown["outputs"] == "float32[N,256,28,28]"
    assert "x3.5.b1.2: float32[N,64,28,28]" in shown["inputs"]
    assert shown["source"] == "out = Concat(b1, b2, b3, b4)"
    assert shown["spec"].endswith("googlenet.net:16:11")
    assert shown["zoomed"] is True
