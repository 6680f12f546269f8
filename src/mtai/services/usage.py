"""The usage ledger: one record per gateway request, written off the response path, never lost.

A request's record is appended to this process's spool file (one JSON line, flushed to the
kernel at once: it survives the process crashing). A background task moves spooled records
into Postgres in batches, idempotently (the tenant and the server-made request id are the key),
together with the daily rollups and, where the tenant allows, the prompt log; each batch also
purges expired prompt logs and stored Responses API responses. Spool files of processes that
died are claimed and drained by the survivors or by the next start.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from mtai.context import client_request_id_var
from mtai.db.engine import Database
from mtai.db.repositories import responses as responses_repo
from mtai.db.repositories import tenants as tenants_repo
from mtai.db.repositories import usage as usage_repo
from mtai.logging import get_logger
from mtai.services.principal import Principal

log = get_logger(__name__)


@dataclass(frozen=True)
class PromptLogEntry:
    prompt: list[dict[str, Any]]
    response: str
    retention_days: int
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # the answer's calls


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    tenant_id: uuid.UUID
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    latency_ms: int
    ttft_ms: int | None
    status: str  # ok | error | cancelled
    error_code: str | None
    api: str  # native | openai | embeddings | rerank | rag_search | rag_rerank | ingestion
    created_at: datetime
    cached: bool = False
    prompt_log: PromptLogEntry | None = None
    client_request_id: str | None = None  # the client's X-Request-ID, for correlation only
    cached_read_tokens: int = 0  # parts of prompt_tokens read from / written to the provider's
    cached_write_tokens: int = 0  # prompt cache
    reasoning_tokens: int = 0  # part of completion_tokens
    tool_calls: int = 0  # tool calls in the answer
    end_user: str | None = None  # the request's `user`: the caller's own end user, as given

    @classmethod
    def for_principal(cls, principal: Principal, **fields: Any) -> UsageRecord:
        return cls(
            tenant_id=principal.require_tenant(),
            user_id=principal.user_id,
            api_key_id=principal.api_key_id,
            client_request_id=client_request_id_var.get(),
            **fields,
        )


def _encode(value: object) -> str:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot spool {type(value).__name__}")


def _with_defaults(raw: dict[str, Any], kind: type[Any]) -> None:
    """Fields added since `raw` was spooled (by an older version) get their defaults."""
    for f in fields(kind):
        if f.default is not MISSING:
            raw.setdefault(f.name, f.default)
        elif f.default_factory is not MISSING:
            raw.setdefault(f.name, f.default_factory())


def _decode(line: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(line)
    for key in ("tenant_id", "user_id", "api_key_id"):
        raw[key] = uuid.UUID(raw[key]) if raw[key] else None
    raw["cost_usd"] = Decimal(raw["cost_usd"])
    raw["created_at"] = datetime.fromisoformat(raw["created_at"])
    _with_defaults(raw, UsageRecord)
    if raw["prompt_log"]:
        _with_defaults(raw["prompt_log"], PromptLogEntry)
    return raw


# Counters are INTEGER columns and the end user a VARCHAR(256): one value out of range (a
# tenant's own upstream can report any usage, a caller can send any `user`) would fail the
# whole batch on every drain, holding back every tenant's usage. Out-of-range values are
# clamped and cut instead.
_COUNTERS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_read_tokens",
    "cached_write_tokens",
    "reasoning_tokens",
    "tool_calls",
)
_INT_MAX = 2**31 - 1
END_USER_MAX = 256


def _storable(value: Any) -> Any:
    """`value` with every string fit for PostgreSQL text and jsonb: no NUL, no lone surrogate
    (which JSON escapes can carry in from a request or an upstream's answer)."""
    if isinstance(value, str):
        value = value.replace("\x00", "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def _event(record: dict[str, Any]) -> dict[str, Any]:
    event = {k: v for k, v in record.items() if k != "prompt_log"}
    for key in _COUNTERS:
        event[key] = min(max(int(event[key]), 0), _INT_MAX)
    if event["end_user"] is not None:
        event["end_user"] = _storable(str(event["end_user"]))[:END_USER_MAX]
    return event


def _private(path: str, flags: int) -> int:
    """Spool files are created 0600 whatever the umask: they can hold prompts."""
    return os.open(path, flags, 0o600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class UsageLedger:
    def __init__(
        self, db: Database, spool_dir: Path, *, responses_retention: timedelta = timedelta(days=30)
    ) -> None:
        """`responses_retention`: how long stored Responses API responses are kept; the drain
        purges older ones, as it purges expired prompt logs."""
        self.db = db
        self.spool_dir = spool_dir
        self.responses_retention = responses_retention
        # Records can hold prompts (prompt logging): only the service's own user reads them.
        spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        spool_dir.chmod(0o700)
        self._file = self._open()
        self._lock = asyncio.Lock()

    def _open(self) -> Any:
        path = self.spool_dir / f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        return open(path, "a", encoding="utf-8", opener=_private)  # Path.open takes no opener

    def record(self, record: UsageRecord) -> None:
        """Hand a record over durably. A write to the page cache: microseconds, no await, so
        it also runs in the `finally` of a cancelled stream."""
        self._file.write(json.dumps(asdict(record), default=_encode) + "\n")
        self._file.flush()

    def _claim(self) -> list[Path]:
        """Files to drain now: this process's current one (rotated) and those of dead processes."""
        claimed: list[Path] = []
        current = Path(self._file.name)
        if current.stat().st_size > 0:
            self._file.close()
            self._file = self._open()
            target = current.with_name(f"claimed-{os.getpid()}-{current.name}")
            current.rename(target)
            claimed.append(target)
        mine = str(os.getpid())
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            if path == Path(self._file.name) or path in claimed:
                continue
            kind, owner = path.name.split("-")[:2]
            if kind == "claimed" and owner == mine:
                claimed.append(path)  # left by a drain of ours that failed: retry it
                continue
            if not owner.isdigit() or _alive(int(owner)):
                continue
            target = path.with_name(f"claimed-{mine}-{uuid.uuid4().hex[:8]}.jsonl")
            try:
                path.rename(target)
            except FileNotFoundError:
                continue  # another process claimed it first
            claimed.append(target)
        return claimed

    @staticmethod
    def _read(paths: list[Path]) -> list[dict[str, Any]]:
        records = []
        for path in paths:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(_decode(line))
                except (ValueError, KeyError, TypeError):
                    # Only a line cut by a crash mid-write can be torn; say so loudly.
                    log.error("usage.spool_line_unreadable", file=path.name, line=number)
        return records

    async def drain(self) -> int:
        """Move every spooled record into Postgres; returns how many were new."""
        async with self._lock:
            paths = self._claim()  # a few renames; on the loop, so `record` never races it
            if not paths:
                return 0
            records = await asyncio.to_thread(self._read, paths)
            inserted = await self._store(records)
            for path in paths:
                path.unlink(missing_ok=True)
            return inserted

    async def _store(self, records: list[dict[str, Any]]) -> int:
        async with self.db.platform() as session:
            # A tenant deleted while its usage was spooled: its rows have no tenant to belong
            # to, and one of them would make the whole batch fail (foreign key) on every drain,
            # holding back every other tenant's usage for good.
            tenants = await tenants_repo.existing_ids(session, {r["tenant_id"] for r in records})
            gone = [r for r in records if r["tenant_id"] not in tenants]
            if gone:
                log.warning("usage.tenant_deleted", dropped=len(gone))
                records = [r for r in records if r["tenant_id"] in tenants]
            events = [_event(r) for r in records]
            fresh = await usage_repo.insert_events(session, events)
            await usage_repo.add_to_daily(session, _rollup(fresh))
            fresh_ids = {(row["tenant_id"], row["request_id"]) for row in fresh}
            logs = [
                {
                    "request_id": r["request_id"],
                    "tenant_id": r["tenant_id"],
                    "model": r["model"],
                    "prompt": _storable(r["prompt_log"]["prompt"]),
                    "response": _storable(r["prompt_log"]["response"]),
                    "tool_calls": _storable(r["prompt_log"]["tool_calls"]),
                    "created_at": r["created_at"],
                    "expires_at": r["created_at"]
                    + timedelta(days=r["prompt_log"]["retention_days"]),
                }
                for r in records
                if r.get("prompt_log") and (r["tenant_id"], r["request_id"]) in fresh_ids
            ]
            await usage_repo.insert_prompt_logs(session, logs)
            now = datetime.now(UTC)
            await usage_repo.purge_prompt_logs(session, now)
            await responses_repo.purge_older_than(session, now - self.responses_retention)
        return len(fresh)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.drain()
            except Exception:
                # The files stay claimed on disk and are retried by the next drain or start.
                log.exception("usage.drain_failed")

    async def close(self) -> None:
        try:
            await self.drain()
        finally:
            self._file.close()


def _rollup(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[tuple[uuid.UUID, date, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["tenant_id"], row["created_at"].astimezone(UTC).date(), row["model"])
        total = totals.setdefault(
            key,
            {
                "tenant_id": key[0],
                "day": key[1],
                "model": key[2],
                "requests": 0,
                "errors": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost_usd": Decimal(0),
                "cached_read_tokens": 0,
                "cached_write_tokens": 0,
                "reasoning_tokens": 0,
            },
        )
        total["requests"] += 1
        total["errors"] += row["status"] == "error"
        total["prompt_tokens"] += row["prompt_tokens"]
        total["completion_tokens"] += row["completion_tokens"]
        total["cost_usd"] += row["cost_usd"]
        for name in ("cached_read_tokens", "cached_write_tokens", "reasoning_tokens"):
            total[name] += row[name]
    return list(totals.values())
