"""HTML building blocks of the report: the page, sections, tables, notes and figures.

The page is self-contained: plotly.js (from the installed plotly package) is inlined once in the head, each
figure is a div drawn by it, and nothing is fetched from the network when the file is opened.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

FIGURE_CONFIG = {"displaylogo": False, "responsive": True}
LONG_CELL_CHARS = 40
MAX_CELL_CHARS = 240  # longer text (a trial's failure reason) is cut in tables; the run files hold it whole

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 0 24px 48px; color: #1f2933; }
h1 { margin-top: 28px; } h2 { border-bottom: 1px solid #d9e2ec; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
th, td { border: 1px solid #d9e2ec; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f4f8; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.long { overflow-wrap: anywhere; min-width: 12em; }
.scroll { overflow-x: auto; max-width: 100%; }
.note { background: #f0f4f8; border-left: 4px solid #9fb3c8; padding: 8px 12px; margin: 10px 0; }
.bad { background: #fde8e8; border-left-color: #e12d39; } .good { background: #e3f9e5; border-left-color: #3f9142; }
nav a { margin-right: 12px; } .figure { margin: 8px 0 16px; }
"""


def page(title: str, sections: list[str], nav: list[tuple[str, str]]) -> str:
    links = " ".join(f'<a href="#{escape(anchor)}">{escape(name)}</a>' for anchor, name in nav)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n<script>{get_plotlyjs()}</script>\n</head>\n<body>\n"
            f"<h1>{escape(title)}</h1>\n<nav>{links}</nav>\n" + "\n".join(sections) + "\n</body>\n</html>\n")


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{escape(anchor)}">\n<h2>{escape(title)}</h2>\n' + "\n".join(p for p in parts if p) + \
        "\n</section>"


def note(text: str, kind: str = "") -> str:
    return f'<div class="note {kind}">{escape(text)}</div>'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def figure(fig: go.Figure | None, anchor: str, missing: str) -> str:
    """The figure as a div drawn by the page's plotly.js, or ``missing`` as a note."""
    if fig is None:
        return note(missing)
    div = fig.to_html(full_html=False, include_plotlyjs=False, config=FIGURE_CONFIG, div_id=f"fig-{anchor}")
    return f'<div class="figure">{div}</div>'


def fmt(value: Any) -> str:
    """A cell's text: numbers to 5 significant digits, nested values as compact text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.5g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def table(rows: list[dict[str, Any]], columns: list[str] | None = None, caption: str = "") -> str:
    """Rows of dicts as a table; columns default to every key, in the order first seen."""
    if not rows:
        return ""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            text = fmt(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{escape(text)}</td>')
            else:  # a long unbroken text (an architecture) may wrap anywhere rather than widen the page
                cells.append(f'<td class="long">{escape(text)}</td>' if len(text) > LONG_CELL_CHARS
                             else f"<td>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def key_values(pairs: list[tuple[str, Any]]) -> str:
    """A two-column table of labelled values; empty values are left out."""
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(fmt(v))}</td></tr>" for k, v in pairs
                   if v not in (None, "", [], (), {}))
    return f"<table><tbody>{rows}</tbody></table>"


def any_json(value: Any) -> str:
    """A JSON value of unknown shape, readably: objects as key/value tables (nested ones in turn), lists of
    objects as tables, text as paragraphs."""
    if isinstance(value, dict):
        scalars = [(str(k), v) for k, v in value.items() if not isinstance(v, (dict, list))]
        nested = [(str(k), v) for k, v in value.items() if isinstance(v, (dict, list))]
        parts = [key_values(scalars)] if scalars else []
        for k, v in nested:
            parts.append(f"<h4>{escape(k)}</h4>" + any_json(v))
        return "\n".join(parts)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return table(value)
        return paragraph(fmt(value))
    return paragraph(fmt(value))
