"""The user's Daedalus data directory: what must live outside any run directory.

It holds the audit logs' anchors (``anchors/``), the reviewers' private keys (``keys/``) and the locally
trusted public keys (``trusted_keys.toml``). Under the threat model of ``store/audit.py`` someone who can write
a run directory cannot write here, which is why the anchors and keys live here and not in the run. The default
knowledge base (``knowledge.db``, every finished run's trials: ``store/knowledge.py``) lives here too, since it
outlives the runs it learns from.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "DAEDALUS_HOME"


def data_home() -> Path:
    """``$DAEDALUS_HOME``, else ``$XDG_DATA_HOME/daedalus``, else ``~/.local/share/daedalus`` (not created here)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg).expanduser() / "daedalus"
    return Path.home() / ".local" / "share" / "daedalus"


KNOWLEDGE_FILE = "knowledge.db"  # the default knowledge base (store/knowledge.py): every run's trials
KNOWLEDGE_ENV = "DAEDALUS_KNOWLEDGE"  # the knowledge base when no --knowledge is given (a URL, or "off")
KNOWLEDGE_OFF = "off"  # --knowledge off: nothing recorded (here, so that the light options module can name it)


def default_knowledge_path() -> Path:
    """The default knowledge base, an SQLite file in the data directory (not created here)."""
    return data_home() / KNOWLEDGE_FILE


LEARNED_PORTFOLIO_FILE = "portfolio.json"  # 'daedalus learn': the portfolio re-mined with the user's own runs


def learned_portfolio_path() -> Path:
    """The portfolio 'daedalus learn' writes, which builds then prefer to the shipped one (not created here)."""
    return data_home() / LEARNED_PORTFOLIO_FILE
