"""The self-contained HTML page: the SVG, the facts of every box, and a little script to pan,
zoom and show a clicked box's shapes and spec line. Nothing is fetched from anywhere."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import Span
from .layout import Placed
from .render import esc, to_svg
from .view import View


def _source_line(span: Span | None) -> str:
    if span is None:
        return ""
    try:
        lines = Path(span.path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    return lines[span.line - 1] if 0 < span.line <= len(lines) else ""


def to_html(view: View, placed: Placed) -> str:
    nodes = {}
    for bid, box in view.boxes.items():
        nodes[bid] = dict(box.info, title=box.lines[0], kind=box.kind,
                          where=str(box.span) if box.span else "", source=_source_line(box.span).strip())
    data = json.dumps(nodes).replace("</", "<\\/")
    svg = to_svg(view, placed, interactive=True)
    return _HTML.replace("%TITLE%", esc(view.title)).replace("%SVG%", svg).replace("%DATA%", data)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%TITLE%</title>
<style>
html, body { margin: 0; height: 100%; overflow: hidden; font: 13px system-ui, sans-serif; }
#stage { position: absolute; inset: 0 340px 0 0; overflow: hidden; cursor: grab; background: #fafafa; }
#stage.dragging { cursor: grabbing; }
#stage svg { transform-origin: 0 0; }
#panel { position: absolute; top: 0; right: 0; bottom: 0; width: 340px; box-sizing: border-box; padding: 12px;
         border-left: 1px solid #ccc; overflow: auto; background: white; }
#panel h2 { font-size: 15px; margin: 0 0 8px; word-break: break-all; }
#panel pre { background: #f4f4f4; padding: 6px; white-space: pre-wrap; word-break: break-all; }
#panel dt { font-weight: bold; margin-top: 6px; }
#panel dd { margin: 0 0 0 8px; font-family: monospace; }
.node.selected rect { stroke: #d33; stroke-width: 3; }
#help { color: #666; }
</style></head>
<body>
<div id="stage">%SVG%</div>
<div id="panel"><h2>%TITLE%</h2><p id="help">Drag to pan, scroll to zoom, click a box for its shapes
and the spec line it comes from. Keys: 0 fits the page.</p>
<input id="find" type="search" placeholder="find a layer (Enter)" style="width: 100%; box-sizing: border-box">
<div id="details"></div></div>
<script>
"use strict";
const NODES = %DATA%;
const stage = document.getElementById("stage");
const svg = stage.querySelector("svg");
let scale = 1, tx = 0, ty = 0;
function apply() { svg.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`; }
// The whole drawing (key 0), or at first its top at a readable size: deep networks are tall.
function fit(whole) {
  const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  scale = Math.min(stage.clientWidth / w, whole ? stage.clientHeight / h : 1, 1);
  tx = (stage.clientWidth - w * scale) / 2; ty = 10; apply();
}
stage.addEventListener("wheel", (e) => {
  e.preventDefault();
  const r = stage.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
  const k = Math.exp(-e.deltaY * 0.0015), next = Math.min(8, Math.max(0.02, scale * k));
  tx = mx - (mx - tx) * next / scale; ty = my - (my - ty) * next / scale; scale = next; apply();
}, { passive: false });
let drag = null;
stage.addEventListener("mousedown", (e) => { drag = { x: e.clientX - tx, y: e.clientY - ty, moved: false }; stage.classList.add("dragging"); });
window.addEventListener("mousemove", (e) => {
  if (!drag) return;
  drag.moved = true; tx = e.clientX - drag.x; ty = e.clientY - drag.y; apply();
});
window.addEventListener("mouseup", () => { stage.classList.remove("dragging"); setTimeout(() => { drag = null; }, 0); });
window.addEventListener("keydown", (e) => { if (e.key === "0") fit(true); });
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }
function show(id) {
  const n = NODES[id];
  document.querySelectorAll(".node.selected").forEach((g) => g.classList.remove("selected"));
  document.querySelectorAll(".node").forEach((g) => { if (g.dataset.id === id) g.classList.add("selected"); });
  let out = `<h3 id="selected-title">${esc(n.title)}</h3><dl>`;
  const rows = [["op", n.op], ["block", n.block], ["layers", n.layers], ["parameters", n.parameters],
                ["inputs", (n.inputs || []).join("\\n")], ["outputs", (n.outputs || []).join("\\n")],
                ["shape", n.shape], ["spec", n.where]];
  for (const [k, v] of rows) {
    if (v === undefined || v === "" || v === null) continue;
    const text = typeof v === "number" ? v.toLocaleString("en") : v;
    out += `<dt>${k}</dt><dd class="${k}">${esc(text).replace(/\\n/g, "<br>")}</dd>`;
  }
  out += "</dl>";
  if (n.source) out += `<pre class="source">${esc(n.source)}</pre>`;
  document.getElementById("details").innerHTML = out;
}
document.querySelectorAll(".node").forEach((g) => g.addEventListener("click", () => { if (!drag || !drag.moved) show(g.dataset.id); }));
// Find: the first box whose name contains the text (Enter again: the next), centred and shown.
const ids = Object.keys(NODES);
let lastFind = { text: "", at: -1 };
document.getElementById("find").addEventListener("keydown", (e) => {
  if (e.key !== "Enter") return;
  const text = e.target.value.trim();
  if (!text) return;
  const start = text === lastFind.text ? lastFind.at + 1 : 0;
  const order = ids.slice(start).concat(ids.slice(0, start));
  const id = order.find((i) => i.includes(text));
  if (id === undefined) { document.getElementById("details").textContent = `no layer named like '${text}'`; return; }
  lastFind = { text, at: ids.indexOf(id) };
  const g = [...document.querySelectorAll(".node")].find((n) => n.dataset.id === id);
  const box = g.querySelector("rect"), x = box.x.baseVal.value + box.width.baseVal.value / 2, y = box.y.baseVal.value;
  scale = Math.max(scale, 0.8);
  tx = stage.clientWidth / 2 - x * scale; ty = stage.clientHeight / 3 - y * scale; apply();
  show(id);
});
fit(false);
</script>
</body></html>
"""
