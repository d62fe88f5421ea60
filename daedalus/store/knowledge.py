"""The knowledge base: every finished run's meta-features and trials, kept across runs (issue 12).

One SQLite file in the user's data directory by default (``home.default_knowledge_path``), any SQLAlchemy URL
otherwise (a PostgreSQL database a team shares). Two tables, written with SQLAlchemy Core:

    runs    one row per run: run_id (primary key), kind, task, metric, direction, rows x features, the
            meta-features (JSON text), when it was created, the data set's name, its best score, the table's
            fingerprint (JSON text: its columns and target as hashes, ``data/fingerprint.py``; NULL for an
            image run, or a run recorded before fingerprints)
    trials  one row per trial: run_id (indexed), number, space, family, configuration (JSON text), score,
            fit seconds, status

Promises:
- **atomic**: ``record_run`` writes a run and its trials in one transaction; the same run_id again replaces them
  (a resumed run records again), so a reader sees a run whole or not at all;
- **several writers**: SQLite runs in WAL mode with a busy timeout and takes its write lock when a transaction
  begins (``BEGIN IMMEDIATE``), so concurrent writers queue instead of failing; PostgreSQL's own transactions do
  that, and its tables are created under an advisory lock (``CREATE TABLE`` races otherwise);
- **older bases are upgraded**: a column added in a later release (``ADDED_COLUMNS``, nullable) is added when
  a newer Daedalus opens a base made without it; a base it cannot write (read-only) is still read without it;
- **what is read is someone else's data**: a team's base, or a file anyone may have edited. Nothing is
  unpickled; every value read is type-checked, and a row that fails is skipped and named in ``warnings``,
  never an exception in the build that reads it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
import zlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from daedalus.errors import ConfigError, DaedalusError
from daedalus.store.home import KNOWLEDGE_ENV, default_knowledge_path
from daedalus.store.home import KNOWLEDGE_OFF as OFF

__all__ = ["KINDS", "OFF", "SPACES", "KnowledgeBase", "KnowledgeError", "RunEntry", "TrialEntry",
           "default_knowledge_url", "describe_url"]

KINDS = ("table", "image")
SPACES = KINDS  # a trial's space: a table configuration or an image network
FORMAT_VERSION = 1  # of the export's JSON
BUSY_TIMEOUT_SECONDS = 10.0  # a SQLite writer waits this long for another's transaction (each takes ms)
CONNECT_TIMEOUT_SECONDS = 5  # an unreachable server costs a build at most this long
STATEMENT_TIMEOUT_SECONDS = 30  # a PostgreSQL statement waiting longer (another session's lock) is an error
MAX_JSON_CHARS = 1_000_000  # a configuration or meta-feature text longer than this is not read


class KnowledgeError(DaedalusError):
    """The knowledge base cannot be opened, read or written, or names no such run."""


@dataclass(frozen=True)
class TrialEntry:
    """One trial of a run: its configuration in its space (a table family's hyperparameters, or an image
    network's genotype under ``"genotype"``), what it scored and how it ended."""

    number: int
    space: str  # "table" or "image"
    family: str  # a model family, or the architecture space's name
    config: dict[str, Any]
    score: float | None
    fit_seconds: float | None
    status: str  # ok, failed, error, timeout, memory, ...


@dataclass(frozen=True)
class RunEntry:
    """One finished run: what its data looked like and how it was judged."""

    run_id: str
    kind: str  # "table" or "image"
    task: str  # binary, multiclass, regression, image
    metric: str
    greater_is_better: bool
    n_rows: int
    n_features: int
    meta_features: dict[str, float | None]
    created: float  # seconds since the epoch
    dataset: str  # the data file's name, or "<DataFrame>"
    best_score: float | None
    fingerprint: dict[str, Any] | None = None  # the table's columns (data/fingerprint.py), checked by its reader


_META = sa.MetaData()
RUNS = sa.Table(
    "runs", _META,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("greater_is_better", sa.Boolean, nullable=False),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("n_features", sa.Integer, nullable=False),
    sa.Column("meta_features", sa.Text, nullable=False),  # JSON text: no driver-specific JSON type to trust
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("best_score", sa.Double, nullable=True),
    sa.Column("recorded", sa.Double, nullable=False),  # when this entry was (last) written
    sa.Column("fingerprint", sa.Text, nullable=True),  # JSON text; added in the base's second version
)
# Columns added after the first release, to a base made without them (each nullable: older rows hold NULL).
ADDED_COLUMNS = (("runs", "fingerprint", "TEXT"),)
TRIALS = sa.Table(
    "trials", _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("space", sa.String(16), nullable=False),
    sa.Column("family", sa.String(64), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("score", sa.Double, nullable=True),
    sa.Column("fit_seconds", sa.Double, nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
)
_WRITES = "daedalus_writes"  # the execution option that marks a transaction that writes
# PostgreSQL's advisory lock taken while the tables are created: any fixed 64-bit number of our own.
_SCHEMA_LOCK = zlib.crc32(b"daedalus-knowledge-schema")


def default_knowledge_url() -> str:
    """``$DAEDALUS_KNOWLEDGE`` when set (a team's shared base), else the SQLite file in the user's data directory
    (``$DAEDALUS_HOME/knowledge.db`` and the like)."""
    return os.environ.get(KNOWLEDGE_ENV) or f"sqlite:///{default_knowledge_path()}"


def chosen_url(option: str | None) -> str | None:
    """The base a build uses: its ``--knowledge`` option, else the default; None when either says "off"."""
    url = option or default_knowledge_url()
    return None if url == OFF else url


def describe_url(url: str) -> str:
    """``url`` as messages and the audit log may show it: its password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a SQLAlchemy URL>"


def _engine(url: str) -> Engine:
    try:
        parsed = sa.make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"--knowledge {url!r} is not a SQLAlchemy URL ({exc}); pass e.g. "
                          "sqlite:////path/knowledge.db, postgresql://user@host/db or 'off'") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database == str(default_knowledge_path()):  # the data directory may not exist yet
            default_knowledge_path().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # the transactions are ours (BEGIN IMMEDIATE below)
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            # WAL: readers never block the writer, nor it them. A base opened read-only keeps its mode (a damaged
            # file fails at its first query).
            with suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            # A writer takes the write lock when its transaction starts: a deferred one that read first and then
            # wants to write would fail at once (SQLITE_BUSY) when another writer went first, whatever the
            # timeout. A reader takes none, so that a base this user may only read can still be listed.
            writes = connection.get_execution_options().get(_WRITES, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

        return engine
    args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", "psycopg"):
        args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        if "options" not in parsed.query:  # (a URL's own server options are the user's to keep)
            # A statement stuck behind another session's lock ends in an error, not a build that never ends.
            args["options"] = f"-c statement_timeout={STATEMENT_TIMEOUT_SECONDS * 1000}"
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args=args)


class KnowledgeBase:
    """The runs and trials recorded so far. Open with :meth:`open`; every method is one transaction."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine, self.url = engine, url
        # The damaged rows skipped by every read since the base was opened, one line each (a row read twice is
        # named once), so that a caller reading runs, then each run's trials, reports them all at the end.
        self.warnings: list[str] = []
        self.missing: set[tuple[str, str]] = set()  # (table, column) of ADDED_COLUMNS this base lacks (read-only)

    @classmethod
    def open(cls, url: str | None = None) -> KnowledgeBase:
        """The base at ``url`` (None: ``default_knowledge_url()``), its tables created if missing. A base that
        cannot be opened is a KnowledgeError naming it and the fix."""
        url = url or default_knowledge_url()
        if url == OFF:
            raise ConfigError(f"the knowledge base is off (--knowledge off, or {KNOWLEDGE_ENV}=off); pass "
                              "--knowledge URL")
        try:
            engine = _engine(url)
        except (SQLAlchemyError, ImportError, OSError) as exc:  # an unknown dialect, no driver, no directory
            raise KnowledgeError(f"cannot open the knowledge base {describe_url(url)}: {_first_line(exc)}; "
                                 "pass --knowledge with a working SQLAlchemy URL, or --knowledge off") from exc
        base = cls(engine, url)
        try:
            with base._transaction() as conn:  # a base made already is opened without writing (it may be read-only)
                made = all(sa.inspect(conn).has_table(table.name) for table in _META.sorted_tables)
                base.missing = _missing_columns(conn) if made else set()
            if not made or base.missing:
                base._upgrade(made)
        except KnowledgeError:
            engine.dispose()
            raise
        return base

    def _upgrade(self, made: bool) -> None:
        """Make the tables, or add the columns an older release did not have. Two first writers: one makes
        them, the other waits for it (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE) and finds them
        made. An old base this user cannot write is read as it is (``missing`` columns read as NULL)."""
        try:
            with self._transaction(writes=True) as conn:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                _META.create_all(conn, checkfirst=True)
                for table, column, sql_type in ADDED_COLUMNS:
                    if (table, column) in _missing_columns(conn):
                        conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
            self.missing = set()
        except KnowledgeError:
            if not made:
                raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, writes: bool = False) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.execution_options(**{_WRITES: writes}).begin():
                yield conn
        except SQLAlchemyError as exc:
            raise KnowledgeError(f"the knowledge base {describe_url(self.url)} cannot be used: "
                                 f"{_first_line(exc)}; move a damaged file away (a new one is made), fix the URL "
                                 "with --knowledge URL, or turn it off with --knowledge off") from exc

    # -- writing -----------------------------------------------------------------------------------------------
    def record_run(self, run: RunEntry, trials: Sequence[TrialEntry]) -> None:
        """Write ``run`` and its ``trials`` in one transaction, replacing any earlier entry of the same run."""
        row = {**asdict(run), "meta_features": _dumps(run.meta_features), "best_score": _finite(run.best_score),
               "created": float(run.created), "recorded": time.time(),
               "fingerprint": None if run.fingerprint is None else _dumps(run.fingerprint)}
        for column in [c for table, c in self.missing if table == "runs"]:  # an old base not upgraded
            row.pop(column)
        trial_rows = [{**asdict(t), "run_id": run.run_id, "config": _dumps(t.config), "score": _finite(t.score),
                       "fit_seconds": _finite(t.fit_seconds)} for t in trials]
        with self._transaction(writes=True) as conn:
            conn.execute(TRIALS.delete().where(TRIALS.c.run_id == run.run_id))
            conn.execute(RUNS.delete().where(RUNS.c.run_id == run.run_id))
            conn.execute(RUNS.insert(), [row])
            if trial_rows:
                conn.execute(TRIALS.insert(), trial_rows)

    def forget(self, run_id: str) -> int:
        """Remove run ``run_id`` and its trials; the number of trials removed. An unknown id: KnowledgeError."""
        with self._transaction(writes=True) as conn:
            gone = conn.execute(RUNS.delete().where(RUNS.c.run_id == run_id)).rowcount
            trials = conn.execute(TRIALS.delete().where(TRIALS.c.run_id == run_id)).rowcount
        if not gone and not trials:
            raise KnowledgeError(f"no run {run_id!r} in the knowledge base {describe_url(self.url)}; "
                                 "'daedalus knowledge list' shows the runs it holds")
        return int(trials)

    # -- reading (data from someone else: checked, damaged rows skipped) -------------------------------------
    def runs(self, *, kind: str | None = None, task: str | None = None, dataset: str | None = None) -> list[RunEntry]:
        """The runs recorded, oldest first; ``kind``, ``task`` and ``dataset`` (a file name) filter them."""
        query = sa.select(*_raw(RUNS, self.missing))
        for column, value in ((RUNS.c.kind, kind), (RUNS.c.task, task), (RUNS.c.dataset, dataset)):
            if value is not None:
                query = query.where(column == value)
        with self._transaction() as conn:
            rows = conn.execute(query).mappings().all()
        out = [entry for entry in (self._checked(_run_entry, row, "run") for row in rows) if entry is not None]
        return sorted(out, key=lambda r: (r.created, r.run_id))

    def trials(self, run_id: str) -> list[TrialEntry]:
        """Run ``run_id``'s trials by number (none for an unknown run)."""
        with self._transaction() as conn:
            rows = conn.execute(sa.select(*_raw(TRIALS)).where(TRIALS.c.run_id == run_id)).mappings().all()
        out = [entry for entry in (self._checked(_trial_entry, row, "trial") for row in rows) if entry is not None]
        return sorted(out, key=lambda t: t.number)

    def trial_counts(self) -> dict[str, int]:
        """How many trials each run has, by run_id (counted by the database, not read)."""
        query = sa.select(TRIALS.c.run_id, sa.func.count()).group_by(TRIALS.c.run_id)
        with self._transaction() as conn:
            return {str(i): int(n) for i, n in conn.execute(query).all()}

    def resolve(self, ref: str) -> str:
        """The run_id that ``ref`` names: the whole id, or a prefix of it that names one run only."""
        with self._transaction() as conn:
            raw: list[Any] = list(conn.execute(sa.select(sa.type_coerce(RUNS.c.run_id, sa.types.NullType()))).scalars())
        ids = [i for i in raw if isinstance(i, str)]
        if ref in ids:
            return ref
        matches = [i for i in ids if ref and i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        what = f"{len(matches)} runs start with {ref!r}; give more of the id" if matches else f"no run {ref!r}"
        raise KnowledgeError(f"{what} in the knowledge base {describe_url(self.url)}; 'daedalus knowledge list' "
                             "shows the runs it holds")

    def export(self) -> dict[str, Any]:
        """Every run with its trials, as JSON-ready data (damaged rows left out and named in ``warnings``)."""
        out = [{**asdict(run), "trials": [asdict(t) for t in self.trials(run.run_id)]} for run in self.runs()]
        return {"format": "daedalus-knowledge", "version": FORMAT_VERSION, "exported": time.time(),
                "source": describe_url(self.url), "runs": out}

    def _checked(self, convert: Any, row: Any, what: str) -> Any:
        try:
            return convert(row)
        except (TypeError, ValueError, KeyError, RecursionError) as exc:
            ident = row.get("run_id") if isinstance(row.get("run_id"), str) else "?"
            number = f" trial {row.get('number')!r}" if what == "trial" else ""
            line = f"skipped a damaged {what} entry (run {ident[:64]!r}{number}): {exc}"
            if line not in self.warnings:
                self.warnings.append(line)
            return None


def _raw(table: sa.Table, missing: Collection[tuple[str, str]] = ()) -> list[Any]:
    """The table's columns with no type processing: a value SQLite holds in the wrong type (it stores what it is
    given) reaches the checks below as it is, instead of failing inside SQLAlchemy's converters. A column the
    base lacks (``missing``: an old base opened read-only) reads as NULL."""
    return [sa.null().label(c.name) if (table.name, c.name) in missing
            else sa.type_coerce(c, sa.types.NullType()).label(c.name) for c in table.columns]


def _missing_columns(conn: Connection) -> set[tuple[str, str]]:
    inspector = sa.inspect(conn)
    present = {table: {c["name"] for c in inspector.get_columns(table)} for table in {t for t, _, _ in ADDED_COLUMNS}}
    return {(table, column) for table, column, _ in ADDED_COLUMNS if column not in present[table]}


def _run_entry(row: Any) -> RunEntry:
    kind = _text(row["kind"], "kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    meta = _json_dict(row["meta_features"], "meta_features")
    features = {str(k): _number(v, f"meta-feature {k!r}") for k, v in meta.items()}
    return RunEntry(run_id=_text(row["run_id"], "run_id"), kind=kind, task=_text(row["task"], "task"),
                    metric=_text(row["metric"], "metric"), greater_is_better=_flag(row["greater_is_better"]),
                    n_rows=_count(row["n_rows"], "n_rows"), n_features=_count(row["n_features"], "n_features"),
                    meta_features=features, created=_required(_number(row["created"], "created"), "created"),
                    dataset=_text(row["dataset"], "dataset"), best_score=_number(row["best_score"], "best_score"),
                    fingerprint=None if row["fingerprint"] is None else _json_dict(row["fingerprint"], "fingerprint"))


def _trial_entry(row: Any) -> TrialEntry:
    space = _text(row["space"], "space")
    if space not in SPACES:
        raise ValueError(f"space {space!r} is not one of {', '.join(SPACES)}")
    return TrialEntry(number=_count(row["number"], "number"), space=space, family=_text(row["family"], "family"),
                      config=_json_dict(row["config"], "config"), score=_number(row["score"], "score"),
                      fit_seconds=_number(row["fit_seconds"], "fit_seconds"), status=_text(row["status"], "status"))


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} is a {type(value).__name__}, not text")
    return value


def _number(value: Any, name: str) -> float | None:
    """A finite float, or None (no score); a number held as text, a boolean or NaN is damage."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} is a {type(value).__name__}, not a number")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} is {value}, not a finite number")
    return float(value)


def _required(value: float | None, name: str) -> float:
    if value is None:
        raise ValueError(f"{name} is missing")
    return value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{name} is {value!r}, not a count")
    return value


def _flag(value: Any) -> bool:
    """SQLite holds a boolean as 0 or 1, PostgreSQL as a boolean."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise TypeError(f"greater_is_better is {value!r}, not a boolean")


def _json_dict(value: Any, name: str) -> dict[str, Any]:
    text = _text(value, name)
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{name} is {len(text)} characters long, over {MAX_JSON_CHARS}")
    obj = json.loads(text)  # JSON only: never a pickle, whatever the row holds
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise TypeError(f"{name} is a JSON {type(obj).__name__}, not an object")
    return obj


def _finite(value: float | None) -> float | None:
    """NaN and infinities are stored as no value: PostgreSQL and JSON disagree about them."""
    return float(value) if value is not None and math.isfinite(value) else None


def _dumps(obj: dict[str, Any]) -> str:
    """JSON text of ``obj``, non-finite numbers as null and other values (numpy's) as their text."""
    return json.dumps(_clean(obj), sort_keys=True, default=str, allow_nan=False)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # a numpy scalar
        return _clean(obj.item())
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
