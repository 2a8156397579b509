"""No import cycle between any two modules of ours, lazy imports included.

The layer contracts (``[tool.importlinter]`` in pyproject.toml, run by
``lint-imports`` in scripts/test) forbid imports that point up and cycles between
siblings; this test closes the gap between them: a package and a module inside it
(``core.wire`` and ``core.wire.grammar``), or modules of different packages.
grimp reads every import statement, including those inside functions, so an
import hidden in a function body to dodge a cycle counts too.
"""

from __future__ import annotations

import grimp

PACKAGES = ("core", "durable", "transport", "ca", "tlsendpoint", "client", "standin")


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_through_others() -> None:
    imports = grimp.build_graph(*PACKAGES)
    graph = {m: set(imports.find_modules_directly_imported_by(m)) for m in imports.modules}
    assert strongly_connected(graph) == []
