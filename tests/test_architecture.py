"""The house rules of the package (see ARCHITECTURE.md): layers import downward only, no module imports itself
through others (no import circle), no file is over MAX_LINES lines, and the run directory's layout is spelled
only in ``store/``.

Imports are read with ``ast``, not by importing: imports inside functions and under ``if TYPE_CHECKING:`` count
too (a circle of names is a circle for the reader, whenever Python resolves it).
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daedalus"
# Lower number = lower layer. store and data are the ground floor and must not import each other; errors and
# deadline are single modules below everything.
LAYERS = {"errors": 0, "deadline": 0, "store": 1, "data": 1, "spaces": 2, "designers": 3, "evaluation": 4,
          "ensembles": 5, "oversight": 6, "orchestration": 7, "interfaces": 8}
MAX_LINES = 500
# Names of files inside a run, as code outside store/ would spell them (in string literals; an f-string's
# fields read as {}): they must come from store/layout.py or RunStore instead.
RUN_PATHS = re.compile(r"fold_(\{\}|\*|\d+)\.skops|member_(\{\}|\d+)\.skops|bag\.json|oof\.npy|trials/|trial\.json"
                       r"|model\.json|holdout_predictions\.npz|refit\.tmp|checkpoint\.pt|\{\}:0\d+d")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "daedalus" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Every module ``path`` names in an import, relative imports resolved; ``from M import n`` names M and,
    when it is a module, ``M.n``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            out.append(base)
            out.extend(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = _modules()
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
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
                        circles.append(sorted(component))
    return circles


def _string_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of the string literals of a module, docstrings left out, f-strings with ``{}`` fields."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        documented = isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
        if documented and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def test_layers_import_downward_only():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        own = _layer(".".join(rel.parts))
        if own not in LAYERS:
            continue
        for module in _imports(path):
            other = _layer(module)
            if other is None or other == own or other not in LAYERS:
                continue
            if LAYERS[other] >= LAYERS[own]:
                bad.append(f"{rel} imports {module}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(set(bad)))


def test_every_top_level_part_of_the_package_has_a_layer():
    """A new top-level module or subpackage must be given its place in LAYERS, or the layer test skips it."""
    parts = {_layer(name) for name in _modules()} - {None, "__init__", "__main__"}
    assert parts <= set(LAYERS), f"not in LAYERS: {sorted(parts - set(LAYERS))}"


def test_no_import_circles():
    circles = import_circles(import_graph())
    assert not circles, "import circles (move what both need into a module below them):\n" + "\n".join(
        " <-> ".join(c) for c in circles)


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert import_circles(graph) == [["a", "b", "c"]]


def test_no_file_over_the_line_limit():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them): {long}"


def test_run_paths_are_spelled_only_in_store():
    """The run store owns its layout: a trial's directory, fold models, bag.json, oof.npy, model.json... are
    named by store/layout.py and RunStore, and nowhere else (a second spelling drifts from the first)."""
    found = []
    for name, path in _modules().items():
        if _layer(name) == "store":
            continue
        for line, text in _string_literals(ast.parse(path.read_text(encoding="utf-8"))):
            if RUN_PATHS.search(text):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text[:60]!r}")
    assert not found, "run paths spelled outside store/ (use store.layout or RunStore):\n" + "\n".join(found)
