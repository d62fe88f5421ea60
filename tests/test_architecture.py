"""Layers import downward only (see ARCHITECTURE.md)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daedalus"
# Lower number = lower layer. store and data are the ground floor and must not import each other.
LAYERS = {"errors": 0, "store": 1, "data": 1, "spaces": 2, "designers": 3, "evaluation": 4, "ensembles": 5,
          "oversight": 6, "orchestration": 7, "interfaces": 8}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "daedalus" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


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
            if LAYERS[other] > LAYERS[own] or (LAYERS[other] == LAYERS[own]):
                bad.append(f"{rel} imports {module}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)
