"""The local store: one SQLite database for datasets, uploaded files, jobs, events, checkpoints, endpoints, eval
runs, responses and costs.

Why SQLite in WAL mode: a job runner process appends events while the CLI (or the local API server) reads them, and
several CLI processes may start at once. WAL lets readers run during a write; every write is a short
``BEGIN IMMEDIATE`` transaction, so writers queue on the lock (``busy_timeout``) instead of failing or interleaving.

Schema changes are numbered ``migrations/NNNN_name.sql`` files, applied in order, one transaction each, recorded in
``PRAGMA user_version`` (and the ``schema_migrations`` audit table). The version is re-read *after* taking the write
lock, so processes racing to open a fresh database apply each migration exactly once.

Rows come back as plain dicts with JSON columns decoded (and cost amounts as :class:`~decimal.Decimal`). Secrets are
never stored: values that look like API keys are refused with a :class:`~tuneport.errors.StoreError`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from tuneport._version import __version__
from tuneport.errors import StoreError
from tuneport.processes import pid_alive

__all__ = ["Store", "open_store", "schema_version", "Row"]

Row = dict[str, Any]
Order = Literal["asc", "desc"]

_BUSY_TIMEOUT_S = 30.0
_JSON_COLUMNS = frozenset(
    {"stats", "spec", "method", "hyperparameters", "result_files", "error", "metadata", "outputs", "data",
     "metrics", "extra", "config", "endpoints", "summary", "request", "response", "inputs"}
)  # fmt: skip
_JOB_FIELDS = frozenset(
    {"status", "model", "fine_tuned_model", "spec", "spec_hash", "dataset_sha256", "training_file",
     "validation_file", "method", "hyperparameters", "seed", "suffix", "result_files", "error", "trained_tokens",
     "estimated_finish", "metadata", "outputs", "pid", "heartbeat_at", "created_at", "finished_at"}
)  # fmt: skip
_EVAL_RUN_FIELDS = frozenset(
    {
        "name",
        "status",
        "config",
        "spec_hash",
        "dataset_sha256",
        "endpoints",
        "summary",
        "metadata",
        "finished_at",
    }
)
_EVENT_LEVELS = ("info", "warn", "error")
_EVENT_TYPES = ("message", "metrics")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?:sk-[A-Za-z0-9_\-]{16,}|sk_(?:live|test)_[A-Za-z0-9]{16,}|hf_[A-Za-z0-9]{20,}"
    r"|tgp_v1_[A-Za-z0-9_\-]{16,}|gsk_[A-Za-z0-9]{16,}|xai-[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}"
    r"|Bearer\s+[A-Za-z0-9._~+/\-]{8,})"
)
_SECRET_KEYS = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "authorization", "password", "secret", "client_secret",
     "access_token", "auth_token", "bearer"}
)  # fmt: skip
_SECRET_HINT = (
    "tuneport never writes secrets to its database: export the key in an environment variable and store that "
    "variable's NAME instead (for example api_key_env='OPENAI_API_KEY')."
)


# --------------------------------------------------------------------------------------------------- migrations


@lru_cache(maxsize=1)
def _migrations() -> tuple[tuple[int, str, str], ...]:
    """The shipped migrations as (number, file name, sql), checked to be numbered 1..N without gaps."""
    found = []
    for entry in resources.files("tuneport.jobs").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_\w+\.sql", entry.name)
        if match:
            found.append((int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    if [number for number, _, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"tuneport's migrations are not numbered 1..N: {[name for _, name, _ in found]}")
    return tuple(found)


def schema_version() -> int:
    """The newest schema version this tuneport knows (the number of the last migration)."""
    return _migrations()[-1][0]


def _statements(script: str) -> Iterator[str]:
    """Split a SQL script into statements (``executescript`` would COMMIT our migration transaction early)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if any(line.strip() and not line.strip().startswith("--") for line in buffer.splitlines()):
        raise RuntimeError(f"a migration ends with a statement missing its ';': {buffer.strip()[:80]!r}")


# ------------------------------------------------------------------------------------------------ encoding rows


@lru_cache(maxsize=128)
def _columns(description: tuple) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """A query's column names, and which of them hold JSON or an amount (worked out once per query shape)."""
    names = tuple(column[0] for column in description)
    decoded = tuple(i for i, name in enumerate(names) if name in _JSON_COLUMNS)
    amounts = tuple(i for i, name in enumerate(names) if name == "amount")
    return names, decoded, amounts


def _row_factory(cursor: sqlite3.Cursor, values: tuple) -> Row:
    names, decoded, amounts = _columns(cursor.description)
    row = dict(zip(names, values, strict=True))
    for i in decoded:
        if values[i] is not None:
            row[names[i]] = json.loads(values[i])  # not orjson: it turns integers past 64 bits into floats
    for i in amounts:
        if values[i] is not None:
            row[names[i]] = Decimal(values[i])
    return row


def _json_default(value: Any) -> Any:
    if isinstance(value, (Path, Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(column: str, value: Any) -> Any:
    if value is not None and column in _JSON_COLUMNS:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    if isinstance(value, Path):
        return str(value)
    return value


def _now() -> int:
    return int(time.time())


def _mask(value: str) -> str:
    return f"{value[:3]}…({len(value)} chars)"


def _refuse_secrets(where: str, value: Any, at: str = "") -> None:
    """Raise StoreError if ``value`` (recursively) holds something that looks like an API key or password."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            key_looks_secret = isinstance(key, str) and key.lower() in _SECRET_KEYS
            if key_looks_secret and isinstance(item, str) and item and not _ENV_NAME.fullmatch(item):
                raise StoreError(
                    f"Refusing to store a secret in {where} at {at}.{key} (value {_mask(item)}).",
                    hint=_SECRET_HINT,
                )
            _refuse_secrets(where, item, f"{at}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _refuse_secrets(where, item, f"{at}[{index}]")
    elif isinstance(value, str):
        match = _SECRET_VALUE.search(value)
        if match:
            raise StoreError(
                f"Refusing to store what looks like an API key in {where}{' at ' + at if at else ''} "
                f"(value {_mask(match[0])}).",
                hint=_SECRET_HINT,
            )


def _in(column: str, values: str | Iterable[str]) -> tuple[str, list[str]]:
    """An ``column IN (...)`` clause for one value or several."""
    values = [values] if isinstance(values, str) else list(values)
    return f"{column} IN ({', '.join('?' * len(values))})", values


# --------------------------------------------------------------------------------------------------- the store


def _event_values(
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: Any = None,
    created_at: int | None = None,
    provider_event_id: str | None = None,
) -> dict[str, Any]:
    """The row of one job event, checked."""
    if level not in _EVENT_LEVELS:
        raise ValueError(f"event level must be one of {_EVENT_LEVELS}, not {level!r}")
    if type not in _EVENT_TYPES:
        raise ValueError(f"event type must be one of {_EVENT_TYPES}, not {type!r}")
    return {"job_id": job_id, "provider_event_id": provider_event_id, "created_at": created_at or _now(),
            "level": level, "message": message, "type": type, "data": data}  # fmt: skip


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """Put the database in WAL mode and return the mode it is in.

    Switching needs a moment of exclusive access, and SQLite answers "database is locked" at once (its busy
    handler is not consulted for this) while another process is creating or migrating a fresh database: retry
    for as long as a write would wait. A database already in WAL mode needs no switch at all.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()["journal_mode"]
            if mode != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()["journal_mode"]
            return mode
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


class Store:
    """The tuneport database. ``Store()`` opens (creating and migrating) ``tuneport.paths.db_path()``.

    Use one ``Store`` per process (it reconnects by itself after a fork); it is safe to share between threads.
    Every method that writes runs in its own short ``BEGIN IMMEDIATE`` transaction.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            from tuneport.paths import db_path

            try:
                path = db_path()
            except OSError as exc:
                raise StoreError(
                    f"Cannot create the tuneport home folder: {exc}",
                    hint="Point TUNEPORT_HOME at a writable folder (or create the folder yourself).",
                ) from exc
        self.path = Path(path)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = self._connect()

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = _row_factory
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if _switch_to_wal(conn) != "wal":
                raise sqlite3.OperationalError("the database could not be switched to WAL mode")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
            return conn
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(
                f"Cannot open the tuneport database at {self.path}: {exc}", hint=_hint(exc)
            ) from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = _migrations()
        latest = migrations[-1][0]
        while True:
            version = conn.execute("PRAGMA user_version").fetchone()["user_version"]
            if version > latest:
                raise StoreError(
                    f"The database at {self.path} has schema version {version}, newer than this tuneport "
                    f"({__version__}) knows (version {latest}).",
                    hint="Upgrade tuneport (`pip install -U tuneport`), or point TUNEPORT_HOME at another folder.",
                )
            if version == latest:
                return
            conn.execute("BEGIN IMMEDIATE")  # lock first, then re-read: another process may have migrated
            try:
                if conn.execute("PRAGMA user_version").fetchone()["user_version"] == version:
                    number, name, sql = migrations[version]
                    for statement in _statements(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, tuneport_version, applied_at)"
                        " VALUES (?, ?, ?, ?)",
                        (number, name, __version__, _now()),
                    )
                    conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: the parent's handle must not be used (or closed) here
            self._pid, self._conn = os.getpid(), self._connect()
        if self._conn is None:
            raise StoreError(f"The store at {self.path} is closed.", hint="Open a new Store().")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; the lock is taken up front so concurrent writers queue, not deadlock."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"The store at {self.path} refused the write: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(
                    f"Writing to the database at {self.path} failed: {exc}", hint=_hint(exc)
                ) from exc

    def _select(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        with self._lock:
            try:
                return self._connection().execute(sql, list(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"Reading the database at {self.path} failed: {exc}", hint=_hint(exc)
                ) from exc

    def _select_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = self._select(sql, params)
        return rows[0] if rows else None

    @staticmethod
    def _insert(
        conn: sqlite3.Connection, table: str, values: Mapping[str, Any], suffix: str = ""
    ) -> sqlite3.Cursor:
        columns = ", ".join(values)
        marks = ", ".join("?" * len(values))
        params = [_encode(column, value) for column, value in values.items()]
        return conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks}) {suffix}", params)

    @staticmethod
    def _update(
        conn: sqlite3.Connection, table: str, key: str, key_value: Any, values: Mapping[str, Any]
    ) -> int:
        assignments = ", ".join(f"{column} = ?" for column in values)
        params = [_encode(column, value) for column, value in values.items()]
        return conn.execute(
            f"UPDATE {table} SET {assignments} WHERE {key} = ?", [*params, key_value]
        ).rowcount

    @staticmethod
    def _page(
        sql: str, params: list[Any], *, after: int | None, limit: int | None, order: Order
    ) -> tuple[str, list[Any]]:
        """Append id-based paging: rows past ``after`` in ``order``, at most ``limit``."""
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        if after is not None:
            sql += f" AND id {'>' if order == 'asc' else '<'} ?"
            params.append(after)
        sql += f" ORDER BY id {order.upper()}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return sql, params

    # -- datasets ------------------------------------------------------------------------------------------------

    def upsert_dataset(
        self,
        sha256: str,
        *,
        path: str | os.PathLike[str],
        size_bytes: int,
        n_examples: int | None = None,
        stats: Mapping[str, Any] | None = None,
        validated_at: int | None = None,
    ) -> Row:
        """Record a dataset by content hash; a later call updates where it lives and what was learned about it."""
        now = _now()
        values = {"sha256": sha256, "path": str(path), "size_bytes": size_bytes, "n_examples": n_examples,
                  "stats": stats, "validated_at": validated_at, "tuneport_version": __version__,
                  "created_at": now, "updated_at": now}  # fmt: skip
        keep = ("n_examples", "stats", "validated_at")  # a bare re-registration keeps what validation learned
        updates = ", ".join(
            f"{c} = coalesce(excluded.{c}, {c})" if c in keep else f"{c} = excluded.{c}"
            for c in ("path", "size_bytes", *keep, "tuneport_version", "updated_at")
        )
        with self._write() as conn:
            self._insert(conn, "datasets", values, f"ON CONFLICT (sha256) DO UPDATE SET {updates}")
            return conn.execute("SELECT * FROM datasets WHERE sha256 = ?", (sha256,)).fetchone()

    def get_dataset_by_sha256(self, sha256: str) -> Row | None:
        return self._select_one("SELECT * FROM datasets WHERE sha256 = ?", (sha256,))

    # -- provider files ------------------------------------------------------------------------------------------

    def record_file(
        self,
        provider: str,
        provider_file_id: str,
        *,
        dataset_sha256: str,
        purpose: str,
        size_bytes: int | None = None,
        filename: str | None = None,
        created_at: int | None = None,
    ) -> Row:
        """Remember that ``provider`` holds these bytes as ``provider_file_id`` (so they are not uploaded again)."""
        values = {"provider": provider, "provider_file_id": provider_file_id, "dataset_sha256": dataset_sha256,
                  "purpose": purpose, "size_bytes": size_bytes, "filename": filename,
                  "tuneport_version": __version__, "created_at": created_at or _now()}  # fmt: skip
        with self._write() as conn:
            self._insert(conn, "files", values, "ON CONFLICT (provider, provider_file_id) DO NOTHING")
            return conn.execute(
                "SELECT * FROM files WHERE provider = ? AND provider_file_id = ?",
                (provider, provider_file_id),
            ).fetchone()

    def find_file(self, provider: str, dataset_sha256: str, purpose: str) -> Row | None:
        """The newest file ``provider`` holds with this content and purpose, or None."""
        return self._select_one(
            "SELECT * FROM files WHERE provider = ? AND dataset_sha256 = ? AND purpose = ? ORDER BY id DESC LIMIT 1",
            (provider, dataset_sha256, purpose),
        )

    def get_file(self, provider: str, provider_file_id: str) -> Row | None:
        """The record of file ``provider_file_id`` held by ``provider``, or None."""
        return self._select_one(
            "SELECT * FROM files WHERE provider = ? AND provider_file_id = ?", (provider, provider_file_id)
        )

    def list_files(self, provider: str, *, purpose: str | None = None) -> list[Row]:
        """Every file ``provider`` holds (optionally of one purpose), newest first."""
        sql, params = "SELECT * FROM files WHERE provider = ?", [provider]
        if purpose is not None:
            sql, params = sql + " AND purpose = ?", [*params, purpose]
        return self._select(sql + " ORDER BY created_at DESC, id DESC", params)

    def forget_file(self, provider: str, provider_file_id: str) -> bool:
        """Drop a file record (e.g. the provider deleted the file). True if there was one."""
        with self._write() as conn:
            sql = "DELETE FROM files WHERE provider = ? AND provider_file_id = ?"
            return conn.execute(sql, (provider, provider_file_id)).rowcount > 0

    # -- jobs ----------------------------------------------------------------------------------------------------

    def _job_values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(fields) - _JOB_FIELDS
        if unknown:
            raise TypeError(f"unknown job field(s): {', '.join(sorted(unknown))}")
        _refuse_secrets("the job", dict(fields))
        return dict(fields)

    def insert_job(self, job_id: str, *, backend: str, status: str, **fields: Any) -> Row:
        """Record a new job; ``fields`` are job columns (model, spec, spec_hash, metadata, outputs, ...)."""
        now = _now()
        values = {"id": job_id, "backend": backend, "status": status, **self._job_values(fields),
                  "tuneport_version": __version__, "updated_at": now}  # fmt: skip
        values.setdefault("created_at", now)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
                raise StoreError(f"A job with id {job_id!r} is already in the store at {self.path}.")
            self._insert(conn, "jobs", values)
            return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def upsert_job(self, job_id: str, *, backend: str, status: str, **fields: Any) -> Row:
        """Insert a job or update the given fields of it (syncing a provider's view of a job into the store)."""
        now = _now()
        values = {"id": job_id, "backend": backend, "status": status, **self._job_values(fields),
                  "tuneport_version": __version__, "updated_at": now}  # fmt: skip
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c not in ("id", "created_at"))
        values.setdefault("created_at", now)
        with self._write() as conn:
            self._insert(conn, "jobs", values, f"ON CONFLICT (id) DO UPDATE SET {updates}")
            return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def update_job(
        self,
        job_id: str,
        *,
        if_status: str | Iterable[str] | None = None,
        events: Iterable[Mapping[str, Any]] = (),
        **fields: Any,
    ) -> Row | None:
        """Update some fields of a job and return it.

        With ``if_status``, update only if the job's status is (one of) that, else return None and change
        nothing: the check and the write are one transaction, so a runner finishing a job cannot overwrite a
        concurrent cancel (``update_job(id, status="succeeded", if_status="running")``).

        ``events`` (keyword arguments of :meth:`add_event`: message, level, type, data) are appended in the same
        transaction: a reader that sees a terminal status then sees the job's last events too (followers read the
        status first, then drain the events).
        """
        values = {**self._job_values(fields), "updated_at": _now()}
        rows = [_event_values(job_id, **event) for event in events]
        with self._write() as conn:
            current = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if current is None:
                raise StoreError(
                    f"No job {job_id!r} in the store at {self.path}.", hint="`tuneport jobs list`"
                )
            allowed = [if_status] if isinstance(if_status, str) else if_status
            if allowed is not None and current["status"] not in set(allowed):
                return None
            self._update(conn, "jobs", "id", job_id, values)
            for row in rows:
                self._insert(conn, "events", row)
            return conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def get_job(self, job_id: str) -> Row | None:
        return self._select_one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def find_job(self, ref: str) -> Row | None:
        """The job ``ref`` names: its id, else the newest job whose fine-tuned model is ``ref`` (``ft:...``)."""
        return self.get_job(ref) or self._select_one(
            "SELECT * FROM jobs WHERE fine_tuned_model = ? ORDER BY created_at DESC, rowid DESC LIMIT 1", (ref,)
        )

    def list_jobs(
        self,
        *,
        backend: str | None = None,
        status: str | Iterable[str] | None = None,
        model: str | None = None,
        metadata: Mapping[str, str] | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Jobs, newest first, filtered; ``after`` a job id continues a previous page (as OpenAI's list does)."""
        sql, params = "SELECT * FROM jobs WHERE 1", []
        if backend is not None:
            sql, params = sql + " AND backend = ?", [*params, backend]
        if status is not None:
            clause, values = _in("status", status)
            sql, params = f"{sql} AND {clause}", [*params, *values]
        if model is not None:
            sql, params = sql + " AND model = ?", [*params, model]
        for key, value in (metadata or {}).items():
            sql, params = sql + " AND json_extract(metadata, ?) = ?", [*params, f'$."{key}"', value]
        if after is not None:
            if self.get_job(after) is None:
                raise StoreError(
                    f"No job {after!r} to list after.", hint="Pass the id of the last job you saw."
                )
            sql += " AND (created_at, rowid) < (SELECT created_at, rowid FROM jobs WHERE id = ?)"
            params.append(after)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        return self._select(sql, params)

    def delete_job(self, job_id: str) -> bool:
        """Forget a job with its events and checkpoints. True if it existed."""
        with self._write() as conn:
            return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    # -- events and checkpoints ----------------------------------------------------------------------------------

    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = "info",
        type: str = "message",
        data: Any = None,
        created_at: int | None = None,
        provider_event_id: str | None = None,
    ) -> Row | None:
        """Append an event to a job's log and return it (``id`` orders it).

        With ``provider_event_id`` (a hosted provider's own event id) a repeat of the same event is ignored and
        None returned, so syncing a remote log twice does not duplicate it.
        """
        values = _event_values(job_id, message, level=level, type=type, data=data, created_at=created_at,
                               provider_event_id=provider_event_id)  # fmt: skip
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise StoreError(f"No job {job_id!r} in the store at {self.path} to add an event to.")
            cursor = self._insert(
                conn, "events", values, "ON CONFLICT (job_id, provider_event_id) DO NOTHING"
            )
            if cursor.rowcount == 0:
                return None
            return conn.execute("SELECT * FROM events WHERE id = ?", (cursor.lastrowid,)).fetchone()

    def list_events(
        self, job_id: str, *, after: int | None = None, limit: int | None = 100, order: Order = "asc"
    ) -> list[Row]:
        """A job's events in ``order`` of id, only those past event id ``after`` (for following a live log)."""
        sql, params = self._page(
            "SELECT * FROM events WHERE job_id = ?", [job_id], after=after, limit=limit, order=order
        )
        return self._select(sql, params)

    def add_checkpoint(
        self,
        job_id: str,
        step: int,
        *,
        metrics: Mapping[str, Any] | None = None,
        path: str | os.PathLike[str] | None = None,
        fine_tuned_model_checkpoint: str | None = None,
        provider_checkpoint_id: str | None = None,
        created_at: int | None = None,
    ) -> Row:
        """Record (or update) the checkpoint a job saved at ``step``."""
        values = {"job_id": job_id, "step": step, "metrics": metrics, "path": path,
                  "fine_tuned_model_checkpoint": fine_tuned_model_checkpoint,
                  "provider_checkpoint_id": provider_checkpoint_id, "created_at": created_at or _now()}  # fmt: skip
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in values if c not in ("job_id", "step", "created_at")
        )
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise StoreError(f"No job {job_id!r} in the store at {self.path} to add a checkpoint to.")
            self._insert(conn, "checkpoints", values, f"ON CONFLICT (job_id, step) DO UPDATE SET {updates}")
            sql = "SELECT * FROM checkpoints WHERE job_id = ? AND step = ?"
            return conn.execute(sql, (job_id, step)).fetchone()

    def list_checkpoints(
        self, job_id: str, *, after: int | None = None, limit: int | None = None, order: Order = "desc"
    ) -> list[Row]:
        """A job's checkpoints, newest first by default (as OpenAI lists them)."""
        sql, params = self._page(
            "SELECT * FROM checkpoints WHERE job_id = ?", [job_id], after=after, limit=limit, order=order
        )
        return self._select(sql, params)

    # -- endpoints -----------------------------------------------------------------------------------------------

    def add_endpoint(
        self,
        name: str,
        *,
        base_url: str,
        model: str,
        kind: str = "openai",
        api_key_env: str | None = None,
        job_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> Row:
        """Save a named endpoint. Credentials are referenced by environment variable NAME, never stored."""
        if not name or not name.strip():
            raise StoreError("An endpoint needs a non-empty name.")
        _refuse_secrets(
            f"endpoint {name!r}", {"name": name, "base_url": base_url, "model": model, "extra": extra}
        )
        if urlsplit(base_url).password:
            raise StoreError(f"Refusing to store a password inside the base_url of endpoint {name!r}.",
                             hint=_SECRET_HINT)  # fmt: skip
        if api_key_env is not None and not _ENV_NAME.fullmatch(api_key_env):
            _refuse_secrets(f"endpoint {name!r} api_key_env", api_key_env)
            raise StoreError(
                f"api_key_env of endpoint {name!r} must be the name of an environment variable, not {api_key_env!r}.",
                hint="For example OPENAI_API_KEY (letters, digits and underscores).",
            )
        now = _now()
        values = {"name": name, "base_url": base_url, "model": model, "api_key_env": api_key_env, "kind": kind,
                  "job_id": job_id, "extra": extra, "tuneport_version": __version__, "created_at": now,
                  "updated_at": now}  # fmt: skip
        with self._write() as conn:
            exists = conn.execute("SELECT 1 FROM endpoints WHERE name = ?", (name,)).fetchone()
            if exists and not replace:
                raise StoreError(
                    f"An endpoint named {name!r} already exists.",
                    hint="Choose another name, or remove it first (`tuneport endpoints rm NAME`).",
                )
            updates = ", ".join(f"{c} = excluded.{c}" for c in values if c not in ("name", "created_at"))
            self._insert(conn, "endpoints", values, f"ON CONFLICT (name) DO UPDATE SET {updates}")
            return conn.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()

    def get_endpoint(self, name: str) -> Row | None:
        return self._select_one("SELECT * FROM endpoints WHERE name = ?", (name,))

    def list_endpoints(self) -> list[Row]:
        return self._select("SELECT * FROM endpoints ORDER BY name")

    def remove_endpoint(self, name: str) -> bool:
        """Delete an endpoint by name. True if it existed."""
        with self._write() as conn:
            return conn.execute("DELETE FROM endpoints WHERE name = ?", (name,)).rowcount > 0

    # -- evaluation runs and responses ---------------------------------------------------------------------------

    def create_eval_run(self, run_id: str | None = None, *, status: str = "running", **fields: Any) -> Row:
        """Start recording an evaluation run; ``fields``: name, config, spec_hash, dataset_sha256, endpoints, ..."""
        unknown = set(fields) - _EVAL_RUN_FIELDS
        if unknown:
            raise TypeError(f"unknown eval run field(s): {', '.join(sorted(unknown))}")
        _refuse_secrets("the eval run", fields)
        now = _now()
        run_id = run_id or f"evalrun-{uuid.uuid4().hex[:16]}"
        values = {"id": run_id, "status": status, **fields, "tuneport_version": __version__, "created_at": now,
                  "updated_at": now}  # fmt: skip
        with self._write() as conn:
            self._insert(conn, "eval_runs", values)
            return conn.execute("SELECT * FROM eval_runs WHERE id = ?", (run_id,)).fetchone()

    def update_eval_run(self, run_id: str, **fields: Any) -> Row:
        unknown = set(fields) - _EVAL_RUN_FIELDS
        if unknown:
            raise TypeError(f"unknown eval run field(s): {', '.join(sorted(unknown))}")
        _refuse_secrets("the eval run", fields)
        with self._write() as conn:
            if not self._update(conn, "eval_runs", "id", run_id, {**fields, "updated_at": _now()}):
                raise StoreError(f"No eval run {run_id!r} in the store at {self.path}.")
            return conn.execute("SELECT * FROM eval_runs WHERE id = ?", (run_id,)).fetchone()

    def get_eval_run(self, run_id: str) -> Row | None:
        return self._select_one("SELECT * FROM eval_runs WHERE id = ?", (run_id,))

    def list_eval_runs(self, *, limit: int | None = None) -> list[Row]:
        """Evaluation runs, newest first."""
        sql = "SELECT * FROM eval_runs ORDER BY created_at DESC, rowid DESC"
        return self._select(sql + " LIMIT ?", [limit]) if limit is not None else self._select(sql)

    def add_response(
        self,
        eval_run_id: str,
        endpoint: str,
        item_index: int,
        *,
        sample: int = 0,
        cache_key: str | None = None,
        request: Any = None,
        response: Any = None,
        latency_ms: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        error: Any = None,
    ) -> Row:
        """Record one endpoint's answer to one eval item (a re-run of the same item/sample replaces it)."""
        values = {"eval_run_id": eval_run_id, "endpoint": endpoint, "item_index": item_index, "sample": sample,
                  "cache_key": cache_key, "request": request, "response": response, "latency_ms": latency_ms,
                  "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "error": error,
                  "created_at": _now()}  # fmt: skip
        key = ("eval_run_id", "endpoint", "item_index", "sample")
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c not in key)
        with self._write() as conn:
            self._insert(conn, "responses", values, f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")
            sql = f"SELECT * FROM responses WHERE {' AND '.join(f'{c} = ?' for c in key)}"
            return conn.execute(sql, (eval_run_id, endpoint, item_index, sample)).fetchone()

    def add_responses(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record many answers in ONE transaction (keys as :meth:`add_response`'s, plus ``eval_run_id``,
        ``endpoint`` and ``item_index``); a re-run of the same item/sample replaces it. Returns the row count.

        An evaluation writes its answers in batches: a transaction per answer would cap a fast endpoint at a few
        hundred answers a second.
        """
        columns = ("eval_run_id", "endpoint", "item_index", "sample", "cache_key", "request", "response",
                   "latency_ms", "prompt_tokens", "completion_tokens", "error", "created_at")  # fmt: skip
        key = ("eval_run_id", "endpoint", "item_index", "sample")
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        sql = (
            f"INSERT INTO responses ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )
        now = _now()
        params = [
            [_encode(c, row.get(c, 0 if c == "sample" else now if c == "created_at" else None)) for c in columns]
            for row in rows
        ]
        if not params:
            return 0
        with self._write() as conn:
            conn.executemany(sql, params)
        return len(params)

    def list_responses(self, eval_run_id: str, *, endpoint: str | None = None) -> list[Row]:
        sql, params = "SELECT * FROM responses WHERE eval_run_id = ?", [eval_run_id]
        if endpoint is not None:
            sql, params = sql + " AND endpoint = ?", [*params, endpoint]
        return self._select(sql + " ORDER BY endpoint, item_index, sample", params)

    def find_cached_response(self, cache_key: str) -> Row | None:
        """The newest successful response recorded under ``cache_key`` in any run (to skip a repeated request)."""
        return self._select_one(
            "SELECT * FROM responses WHERE cache_key = ? AND error IS NULL ORDER BY id DESC LIMIT 1",
            (cache_key,),
        )

    def acquire_eval_lease(
        self, eval_run_id: str, holder: str, *, host: str, pid: int, stale_after: float
    ) -> Row:
        """Take the lease on filling in an eval run's answers for ``holder`` (one process at a time), in one
        transaction with the check. Returns the lease as it is now: ``holder`` is ours when it was free, already
        ours, or stale (its process is dead on this host, or no heartbeat for ``stale_after`` seconds; then
        ``taken_over`` is the stale lease); otherwise it is the live holder's lease, unchanged."""
        now = time.time()
        with self._write() as conn:
            sql = "SELECT * FROM eval_leases WHERE eval_run_id = ?"
            current = conn.execute(sql, (eval_run_id,)).fetchone()
            stale = current is not None and (
                now - current["heartbeat_at"] > stale_after
                or (current["host"] == host and not pid_alive(current["pid"]))
            )
            if current is not None and current["holder"] != holder and not stale:
                return current
            values = {"eval_run_id": eval_run_id, "holder": holder, "host": host, "pid": pid, "acquired_at": now,
                      "heartbeat_at": now}  # fmt: skip
            conn.execute("DELETE FROM eval_leases WHERE eval_run_id = ?", (eval_run_id,))
            self._insert(conn, "eval_leases", values)
            lease = conn.execute(sql, (eval_run_id,)).fetchone()
        return {**lease, "taken_over": current if stale else None}

    def heartbeat_eval_lease(self, eval_run_id: str, holder: str) -> bool:
        """Say the lease's holder is still at work; False when ``holder`` no longer holds it."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE eval_leases SET heartbeat_at = ? WHERE eval_run_id = ? AND holder = ?",
                (time.time(), eval_run_id, holder),
            )
            return cursor.rowcount > 0

    def release_eval_lease(self, eval_run_id: str, holder: str) -> bool:
        """Give the lease back (only its holder can); False when ``holder`` did not hold it."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM eval_leases WHERE eval_run_id = ? AND holder = ?", (eval_run_id, holder)
            )
            return cursor.rowcount > 0

    # -- costs ---------------------------------------------------------------------------------------------------

    def add_cost(
        self,
        kind: str,
        amount: Decimal | str | int,
        *,
        currency: str = "USD",
        inputs: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        eval_run_id: str | None = None,
        dataset_sha256: str | None = None,
        spec_hash: str | None = None,
    ) -> Row:
        """Record a cost. ``amount`` is kept as an exact decimal; ``inputs`` should name each price's source and
        ``as_of`` date so a report can say where a number came from."""
        if isinstance(amount, float):
            raise TypeError(
                "cost amounts must be Decimal, str or int (a float loses cents): use Decimal('1.23')"
            )
        try:
            exact = Decimal(amount)
        except (InvalidOperation, ValueError) as exc:
            raise StoreError(f"Cost amount {amount!r} is not a decimal number.") from exc
        if not exact.is_finite():
            raise StoreError(f"Cost amount {amount!r} is not a finite number.")
        _refuse_secrets("the cost inputs", inputs)
        values = {"kind": kind, "amount": str(exact), "currency": currency, "job_id": job_id,
                  "eval_run_id": eval_run_id, "dataset_sha256": dataset_sha256, "spec_hash": spec_hash,
                  "inputs": inputs, "tuneport_version": __version__, "created_at": _now()}  # fmt: skip
        with self._write() as conn:
            rowid = self._insert(conn, "costs", values).lastrowid
            return conn.execute("SELECT * FROM costs WHERE id = ?", (rowid,)).fetchone()

    def list_costs(
        self, *, kind: str | None = None, job_id: str | None = None, eval_run_id: str | None = None
    ) -> list[Row]:
        sql, params = "SELECT * FROM costs WHERE 1", []
        for column, value in (("kind", kind), ("job_id", job_id), ("eval_run_id", eval_run_id)):
            if value is not None:
                sql, params = f"{sql} AND {column} = ?", [*params, value]
        return self._select(sql + " ORDER BY id", params)


def open_store(path: str | os.PathLike[str] | None = None) -> Store:
    """Open the tuneport database (``TUNEPORT_HOME``'s unless ``path`` is given), creating and migrating it."""
    return Store(path)


def _hint(exc: BaseException) -> str:
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (
            "The file is damaged or is not a tuneport database: move it aside (a new one is created on the next "
            "run) or point TUNEPORT_HOME at another folder."
        )
    if "locked" in text or "busy" in text:
        return "Another tuneport process is holding the database; retry when it is done."
    if "readonly" in text or "read-only" in text:
        return (
            "The database file or its folder is read-only: make it writable or point TUNEPORT_HOME elsewhere."
        )
    return "Check that the folder exists and is writable, or point TUNEPORT_HOME at a writable folder."
