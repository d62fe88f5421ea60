"""Open an HTML file in headless Chromium (Debian's ``chromium`` package, driven by Playwright) and report what
rendered: plotly graphs drawn, console errors, uncaught exceptions and any attempt to reach the network.

No browser is downloaded: Playwright launches the system's ``chromium``. Every request other than the file
itself (and inline data/blob URLs) is aborted and recorded, so a page that needs a CDN fails the check even on a
machine that is online.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Route, sync_playwright

RENDER_TIMEOUT_MS = 30_000
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

# Per plotly graph div: its id, whether plotly drew its SVG, and how many traces it drew.
_GRAPHS_JS = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
    id: d.id, svg: d.querySelector('svg.main-svg') !== null, traces: d.querySelectorAll('g.trace').length}))"""
_ALL_DRAWN_JS = """() => Array.from(document.querySelectorAll('.plotly-graph-div'))
    .every(d => d.querySelector('svg.main-svg') !== null)"""


@dataclass
class PageCheck:
    graphs: dict[str, int] = field(default_factory=dict)  # graph div id -> traces drawn (-1: no SVG at all)
    console_errors: list[str] = field(default_factory=list)  # console.error messages and uncaught exceptions
    network_requests: list[str] = field(default_factory=list)  # URLs the page tried to fetch (aborted)
    text: str = ""  # the page's visible text

    @property
    def undrawn(self) -> list[str]:
        return [gid for gid, traces in self.graphs.items() if traces <= 0]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Debian's 'chromium' package is not installed: apt-get install -y chromium "
                           "(.ci/run installs it)")
    return path


def check_page(path: Path, render_timeout_ms: int = RENDER_TIMEOUT_MS) -> PageCheck:
    """Load ``path``, wait up to ``render_timeout_ms`` for every plotly graph to draw, and say what happened."""
    result = PageCheck()

    def route(route: Route) -> None:
        url = route.request.url
        if url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            result.network_requests.append(url)
            route.abort()

    # Chromium's sandbox refuses to start as root (CI containers run as root); it is needed for untrusted
    # pages only, and this page is our own.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: result.console_errors.append(f"uncaught: {e}"))
            page.route("**/*", route)
            page.goto(Path(path).resolve().as_uri(), wait_until="load", timeout=RENDER_TIMEOUT_MS)
            with contextlib.suppress(PlaywrightError):  # some graph never drew: the counts below say which
                page.wait_for_function(_ALL_DRAWN_JS, timeout=render_timeout_ms)
            for graph in page.evaluate(_GRAPHS_JS):
                result.graphs[graph["id"]] = graph["traces"] if graph["svg"] else -1
            result.text = page.inner_text("body")
        finally:
            browser.close()
    return result
