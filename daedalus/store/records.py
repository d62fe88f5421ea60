"""The run's JSON records read back: a file that is empty, cut short, of the wrong type or without the keys
every reader relies on is refused in one line (``RunError``) naming the file and the fix, never a traceback
from whichever command happened to read it first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daedalus.errors import RunError

# The JSON type of each run record and the keys that every reader relies on (rows: each leaderboard row's keys).
RECORD_SHAPES: dict[str, tuple[type, tuple[str, ...]]] = {
    "run": (dict, ("options", "status")),
    "schema": (dict, ("target", "task", "columns", "classes")),
    "leaderboard": (list, ("rank", "trial", "family", "score", "metric", "fit_seconds", "status")),
}
# What the user can do about a damaged record: the leaderboard is rewritten by a resume, the rest is primary.
_REPAIR = {"leaderboard": "continue the run with 'daedalus resume {root}' to rewrite it"}


def damaged(path: Path, problem: str) -> RunError:
    """The one-line error for a run file that cannot be used as it is."""
    name = path.name.removesuffix(".json")
    fix = _REPAIR.get(name, "restore it from a backup or build the run again").format(root=path.parent)
    return RunError(f"'{path}' is damaged ({problem}); {fix}")


def read_json(path: Path) -> Any:
    """The content of a JSON file of the run; a damaged one raises ``RunError`` (see :func:`damaged`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # a folder in its place, no permission, binary garbage
        raise damaged(path, f"unreadable: {type(exc).__name__}") from None
    if not text.strip():
        raise damaged(path, "empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(path, f"not valid JSON: {exc.msg} at line {exc.lineno}") from None


def checked_record(path: Path, name: str, obj: Any) -> Any:
    """``obj`` (the content of ``path``) if it has the shape ``RECORD_SHAPES`` gives for ``name``."""
    if name not in RECORD_SHAPES:
        return obj
    kind, keys = RECORD_SHAPES[name]
    if not isinstance(obj, kind):
        raise damaged(path, f"a JSON {type(obj).__name__} where a {kind.__name__} belongs")
    items = obj if isinstance(obj, list) else [obj]
    for item in items:
        missing = [k for k in keys if not isinstance(item, dict) or k not in item]
        if missing:
            raise damaged(path, f"missing {', '.join(repr(k) for k in missing)}")
    return obj
