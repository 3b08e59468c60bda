"""What a script does with its module-level names: which are state or measurement rather than settings.

- State: a name assigned again inside a loop, a branch or a `with`/`try` block at module level, incremented
  anywhere (`step += 1`, `b2 -= lr * grad`), a loop's variable, or assigned in a function that declares it
  `global`. Plain top-level assignments in a row are not state: the last one is the value that takes effect.
- Measurement: a name whose every use ends in what is printed (`print(...)`, a logger's call), directly or
  through names that are themselves only printed (`mfu = flops / PEAK_FLOPS; print(mfu)`); a value handed
  to any other call is used. A print that
  names the session's metric is a use: what the metric depends on is what the session tunes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

_PRINTERS = frozenset({"print", "info", "debug", "warning", "log", "write", "set_postfix", "set_description"})
_BLOCKS = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _targets(node: ast.AST) -> Iterator[str]:
    """Plain names bound by an assignment target (`a`, `a, b`, `[a, *b]`)."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            yield from _targets(element)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)


def _module_scope(nodes: list[ast.stmt]) -> Iterator[tuple[ast.stmt, bool]]:
    """(statement, inside a block) for every statement of module scope, functions and classes left out."""
    for node in nodes:
        yield node, False
        if isinstance(node, _BLOCKS):
            for inner, _ in _module_scope(_children(node)):
                yield inner, True


def _children(node: ast.stmt) -> list[ast.stmt]:
    body: list[ast.stmt] = []
    for field in ("body", "orelse", "finalbody"):
        body += getattr(node, field, [])
    for handler in getattr(node, "handlers", []):
        body += handler.body
    return body


def reassigned(tree: ast.Module) -> set[str]:
    """Module-level names the script changes as it runs (see the module's docstring)."""
    found: set[str] = set()
    for node, in_block in _module_scope(tree.body):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            found.update(_targets(node.target))
        if isinstance(node, ast.AugAssign):
            found.update(_targets(node.target))
        elif in_block and isinstance(node, ast.Assign):
            for target in node.targets:
                found.update(_targets(target))
        elif in_block and isinstance(node, ast.AnnAssign):
            found.update(_targets(node.target))
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            declared = {n for g in ast.walk(function) if isinstance(g, ast.Global) for n in g.names}
            for inner in ast.walk(function):
                if isinstance(inner, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                    bound = inner.targets if isinstance(inner, ast.Assign) else [inner.target]
                    found.update(n for t in bound for n in _targets(t) if n in declared)
    return found


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_printer(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return name in _PRINTERS


def _names_metric(call: ast.AST, metric: str) -> bool:
    for node in ast.walk(call):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and metric in node.value:
            return True
        if isinstance(node, ast.Name) and node.id == metric:
            return True
    return False


def _where_used(name: ast.Name, parents: dict[ast.AST, ast.AST], metric: str) -> str | set[str]:
    """`print` when a load ends in a printer's call (one not naming the metric); the names it is assigned
    to; `use` for anything else."""
    node: ast.AST = name
    while node in parents:
        parent = parents[node]
        if _is_printer(parent) and node is not getattr(parent, "func", None):
            return "use" if _names_metric(parent, metric) else "print"
        if isinstance(parent, ast.Call):  # handed to a function, which may train with it
            return "use"
        if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node is parent.value:
            bound = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            names = {n for t in bound for n in _targets(t)}
            simple = all(isinstance(t, (ast.Name, ast.Tuple, ast.List)) for t in bound)
            return names if names and simple else "use"
        if isinstance(parent, (ast.stmt, *_SCOPES)):
            return "use"
        node = parent
    return "use"


def printed_only(tree: ast.Module, metric: str) -> set[str]:
    """Names whose every use ends in what is printed, directly or through names that are only printed."""
    parents = _parents(tree)
    uses: dict[str, list[str | set[str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            where = _where_used(node, parents, metric)
            uses.setdefault(node.id, []).append(where - {node.id} if isinstance(where, set) else where)
    printed: set[str] = set()
    changed = True
    while changed:  # the smallest set closed under "every use is printed or flows into a printed-only name"
        changed = False
        for name, found in uses.items():
            if name in printed or "use" in found:
                continue
            flows = [w for w in found if isinstance(w, set)]
            if all(w <= printed for w in flows) and ("print" in found or any(flows)):
                printed.add(name)
                changed = True
    return printed


def not_settings(tree: ast.Module, metric: str | None = None) -> set[str]:
    """Module-level names that are state or measurement, never knobs (measurement only when the metric's
    name is known: its own print is what everything else is measured by)."""
    return reassigned(tree) | (printed_only(tree, metric) if metric else set())
