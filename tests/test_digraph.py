"""netspec.digraph: the graph container behind the IR, against what networkx's DiGraph promised."""

import gc

import pytest

from netspec.digraph import CycleError, DiGraph
from netspec.gcpause import cycle_collection_paused


def chain(*names):
    g = DiGraph()
    for n in names:
        g.add_node(n, kind="op")
    return g


def test_nodes_keep_insertion_order_and_attributes():
    g = chain("b", "a", "c")
    g.add_node("a", types=[1])  # a second add updates, as networkx does
    assert list(g.nodes) == ["b", "a", "c"] == list(g)
    assert g.nodes["a"] == {"kind": "op", "types": [1]}
    assert list(g.nodes(data=True))[1] == ("a", {"kind": "op", "types": [1]})
    assert "a" in g and "a" in g.nodes and "z" not in g
    assert g.number_of_nodes() == len(g) == len(g.nodes) == 3
    with pytest.raises(KeyError):
        g.nodes["z"]


def test_edges_are_simple_and_add_missing_ends():
    g = chain("a", "b")
    g.add_edge("a", "b")
    g.add_edge("a", "b")  # no parallel edges
    g.add_edge("b", "new")
    assert g.nodes["new"] == {}
    assert list(g.successors("a")) == ["b"] and list(g.predecessors("b")) == ["a"]
    assert g.out_edges("a") == [("a", "b")] and g.in_edges("new") == [("b", "new")]


def test_topological_order_breaks_ties_by_insertion():
    g = chain("in", "d", "c", "b", "out")
    for u, v in [("in", "b"), ("in", "c"), ("c", "d"), ("b", "out"), ("d", "out")]:
        g.add_edge(u, v)
    assert g.topological_order() == ["in", "c", "d", "b", "out"]
    assert g.topological_order(key=lambda n: n) == ["in", "b", "c", "d", "out"]
    assert g.find_cycle() == []


def test_a_cycle_is_refused_and_found():
    g = chain("x", "a", "b", "c")
    for u, v in [("x", "a"), ("a", "b"), ("b", "c"), ("c", "a")]:
        g.add_edge(u, v)
    with pytest.raises(CycleError):
        g.topological_order()
    assert g.find_cycle() == [("a", "b"), ("b", "c"), ("c", "a")]
    loop = chain("x")
    loop.add_edge("x", "x")
    assert loop.find_cycle() == [("x", "x")]


def test_a_deep_chain_sorts_without_recursion():
    names = [f"n{i}" for i in range(50_000)]
    g = chain(*names)
    for u, v in zip(names, names[1:]):
        g.add_edge(u, v)
    assert g.topological_order() == names and g.find_cycle() == []


@pytest.mark.parametrize("enabled", [True, False])
def test_the_gc_pause_restores_the_previous_state(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(RuntimeError):
            with cycle_collection_paused():
                assert not gc.isenabled()
                with cycle_collection_paused():
                    pass
                assert not gc.isenabled()
                raise RuntimeError("a failed parse")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_what_the_pause_made_is_not_left_to_the_next_young_collection():
    was = gc.isenabled()
    gc.enable()
    try:
        with cycle_collection_paused():
            kept = [[i] for i in range(50_000)]
        # The containers made while paused went to the oldest generation, not the youngest.
        assert gc.get_count()[0] < 1_000
        assert gc.is_tracked(kept[0])
    finally:
        gc.enable() if was else gc.disable()


def test_a_callers_frozen_objects_stay_frozen():
    was = gc.isenabled()
    gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with cycle_collection_paused():
            made = [[i] for i in range(1_000)]
        assert gc.get_freeze_count() == frozen and made
    finally:
        gc.unfreeze()
        gc.enable() if was else gc.disable()
