"""The run's Optuna study: where it is stored (the run's own SQLite file, or any SQLAlchemy database given with
``--storage``) and how it is opened, created or found again on resume.

The run's own SQLite file is named relative to the run (``LOCAL_STORAGE``, resolved by
``RunStore.storage_url``), so it follows the run when the directory is renamed into place or copied. A study
in an external database gets a name of its own (``daedalus-<random>``): one left there by a build killed before
its run directory was renamed into place, or another run's, cannot collide with it. Both are recorded in
``run.json`` (:func:`study_location`), and every later open reads them from there.

Imported by the commands that open the study (build, resume), not by ``store.run``: Optuna takes a second to
import, which commands that only read a run's files do not pay.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import optuna

from daedalus.errors import ConfigError
from daedalus.store.run import LOCAL_STORAGE, STUDY_NAME, RunStore


def study_location(storage: str | None) -> dict[str, str]:
    """The ``run.json`` fields that say where a new run's study lives: ``storage`` (the URL as given, or the
    run's own SQLite file) and ``study_name``."""
    if not storage:
        return {"storage": LOCAL_STORAGE, "study_name": STUDY_NAME}
    return {"storage": storage, "study_name": f"{STUDY_NAME}-{uuid.uuid4().hex[:12]}"}


def shown_url(url: str) -> str:
    """The storage URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).render_as_string(hide_password=True))
    except Exception:  # not a URL at all: the message names it as given
        return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The storage at ``url``; a bad URL or an unreachable database is the user's to fix (one line)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:
        raise ConfigError(f"cannot open storage '{shown_url(url)}': {str(exc).splitlines()[0]}; "
                          "pass a valid SQLAlchemy URL to --storage") from exc


def open_study(store: RunStore, direction: Literal["maximize", "minimize"], sampler: Any = None,
               create: bool = False, info: dict[str, Any] | None = None
               ) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The run's study and its storage, created (``create``: it must not exist yet) or loaded. ``info`` is
    the run's ``run.json`` (read when not given)."""
    info = info if info is not None else store.read("run")
    storage = open_storage(store.storage_url(info))
    name = store.study_name(info)
    if create:
        study = optuna.create_study(study_name=name, storage=storage, direction=direction, sampler=sampler,
                                    load_if_exists=False)
    else:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    return study, storage
