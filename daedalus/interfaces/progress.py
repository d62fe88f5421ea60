"""A rich live display of a running build: trials done, best score and family, time left, what runs now."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from daedalus.orchestration.reporter import Progress, Reporter


class RichReporter(Reporter):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.last: Progress | None = None

    def _render(self, p: Progress) -> Text:
        best = f"{p.best_score:.4f} {p.metric} ({p.best_family})" if p.best_score is not None else "-"
        left = f"{p.time_left:5.1f} s left" if p.time_left is not None else ""
        text = Text.assemble(("daedalus ", "bold cyan"), f"trials {p.trials_done}",
                             (f" ({p.trials_failed} failed)" if p.trials_failed else ""),
                             "  best ", (best, "bold green"), f"  {left}  ", (p.running, "yellow"))
        return text

    def update(self, progress: Progress) -> None:
        self.last = progress
        if self.live is None:
            self.live = Live(self._render(progress), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        else:
            self.live.update(self._render(progress))

    def message(self, text: str, **fields: Any) -> None:
        self.console.print(f"[dim]{text}[/dim]", highlight=False)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            if not self.console.is_terminal:
                self.console.line()  # outside a terminal, the last frame is left without its line end
