"""Loading a spec leaves no cyclic garbage behind: its syntax trees are freed by reference
counting once elaborated, not left for a collection that must walk every node of them."""

from __future__ import annotations

import gc

import netspec


def test_load_frees_the_syntax_tree_without_the_collector(tmp_path):
    lines = ["network Deep {", "    input x: float32[N, 16]", "    h0 = x -> Linear(16)"]
    lines += [f"    h{i} = h{i - 1} -> Linear(16)" for i in range(1, 1000)]
    lines += ["    output y = h999", "}", ""]
    path = tmp_path / "deep.net"
    path.write_text("\n".join(lines), encoding="utf-8")
    netspec.load(path)  # imports and caches whatever a first load makes
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        spec = netspec.load(path)
        unreachable = gc.collect()
    finally:
        if was_enabled:
            gc.enable()
    assert len(spec.rows) == 1000
    # A tree kept alive by the file scope <-> definition cycle was ~16 objects per statement.
    assert unreachable < 300, f"{unreachable} objects were left for the cyclic collector"
