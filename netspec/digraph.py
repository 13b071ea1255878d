"""A small directed graph: the container behind the graph IR (`netspec.graph`).

It offers the part of networkx's `DiGraph` interface netspec uses (``g.graph``, ``g.nodes[n]``,
``g.nodes(data=True)``, ``add_node``, ``add_edge``, ``successors``, ``predecessors``,
``out_edges``, ``in_edges``, ``number_of_nodes``, ``n in g``) with the same meaning, plus a
topological order and a cycle finder. networkx itself costs about a fifth of `netspec check`'s
start-up, for a container and a sort.

Nodes and each node's neighbours are kept in insertion order, so every walk is deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping


class CycleError(ValueError):
    """The graph has a cycle, so it has no topological order."""


class NodeView(Mapping):
    """``g.nodes``: node name -> attribute dict; ``g.nodes(data=True)`` yields (name, attrs)."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: dict[str, dict]):
        self._nodes = nodes

    def __getitem__(self, name: str) -> dict:
        return self._nodes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name) -> bool:
        return name in self._nodes

    def __call__(self, data: bool = False):
        return iter(self._nodes.items()) if data else iter(self._nodes)


class DiGraph:
    """Directed graph without parallel edges; nodes carry attribute dicts, the graph one too."""

    def __init__(self):
        self.graph: dict = {}
        self._nodes: dict[str, dict] = {}
        self._succ: dict[str, dict[str, None]] = {}
        self._pred: dict[str, dict[str, None]] = {}

    @property
    def nodes(self) -> NodeView:
        return NodeView(self._nodes)

    def add_node(self, name: str, **attrs) -> None:
        """Add a node, or update the attributes of one already there (as networkx does)."""
        if name in self._nodes:
            self._nodes[name].update(attrs)
            return
        self._nodes[name] = attrs
        self._succ[name] = {}
        self._pred[name] = {}

    def add_edge(self, u: str, v: str) -> None:
        """Add the edge u -> v, adding either end that is missing, without attributes."""
        for end in (u, v):
            if end not in self._nodes:
                self.add_node(end)
        self._succ[u][v] = None
        self._pred[v][u] = None

    def __contains__(self, name) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def number_of_nodes(self) -> int:
        return len(self._nodes)

    def successors(self, name: str) -> Iterator[str]:
        return iter(self._succ[name])

    def predecessors(self, name: str) -> Iterator[str]:
        return iter(self._pred[name])

    def out_edges(self, name: str) -> list[tuple[str, str]]:
        return [(name, v) for v in self._succ[name]]

    def in_edges(self, name: str) -> list[tuple[str, str]]:
        return [(u, name) for u in self._pred[name]]

    def topological_order(self, key: Callable[[str], object] | None = None) -> list[str]:
        """Every node after all its predecessors; among the nodes ready at once, the smallest
        `key` first (insertion order when no key is given). Raises CycleError on a cycle."""
        rank = {n: i for i, n in enumerate(self._nodes)}
        sort_key = key or rank.__getitem__
        waiting = {n: len(p) for n, p in self._pred.items()}
        ready = [(sort_key(n), rank[n], n) for n, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            n = heapq.heappop(ready)[2]
            order.append(n)
            for v in self._succ[n]:
                waiting[v] -= 1
                if not waiting[v]:
                    heapq.heappush(ready, (sort_key(v), rank[v], v))
        if len(order) < len(self._nodes):
            raise CycleError("the graph has a cycle")
        return order

    def find_cycle(self) -> list[tuple[str, str]]:
        """The edges of one cycle, in order (the last edge returns to the first node); [] if none."""
        state: dict[str, int] = {}  # 1: on the current path, 2: finished
        for root in self._nodes:
            if root in state:
                continue
            path = [root]
            state[root] = 1
            stack = [iter(self._succ[root])]
            while stack:
                for v in stack[-1]:
                    if state.get(v) == 1:
                        loop = path[path.index(v):]
                        return list(zip(loop, loop[1:] + [v]))
                    if v not in state:
                        state[v] = 1
                        path.append(v)
                        stack.append(iter(self._succ[v]))
                        break
                else:
                    state[path.pop()] = 2
                    stack.pop()
        return []
