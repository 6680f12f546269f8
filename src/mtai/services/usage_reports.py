"""Reading usage and cost: daily rollups, per-request events, prompt logs, headline stats."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from mtai.db.engine import Database
from mtai.db.models import PromptLog, UsageDaily, UsageEvent
from mtai.db.repositories import usage as usage_repo
from mtai.errors import InvalidInput
from mtai.services.limits import micro_usd
from mtai.services.principal import Principal

MAX_RANGE_DAYS = 366


@dataclass(frozen=True)
class Totals:
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    cached_read_tokens: int  # parts of prompt_tokens
    cached_write_tokens: int
    reasoning_tokens: int  # part of completion_tokens


def totals(rows: list[UsageDaily]) -> Totals:
    return Totals(
        requests=sum(r.requests for r in rows),
        errors=sum(r.errors for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cost_usd=sum((Decimal(r.cost_usd) for r in rows), Decimal(0)),
        cached_read_tokens=sum(r.cached_read_tokens for r in rows),
        cached_write_tokens=sum(r.cached_write_tokens for r in rows),
        reasoning_tokens=sum(r.reasoning_tokens for r in rows),
    )


class UsageReports:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def daily(
        self, principal: Principal, *, since: date | None, until: date | None
    ) -> list[UsageDaily]:
        """Tenant admins: their tenant; a platform admin with no tenant chosen: every tenant."""
        until = until or datetime.now(UTC).date()
        since = since or until - timedelta(days=29)
        if since > until or (until - since).days > MAX_RANGE_DAYS:
            raise InvalidInput(f"Give since <= until, at most {MAX_RANGE_DAYS} days apart.")
        if principal.is_platform_admin and principal.tenant_id is None:
            async with self.db.platform() as session:
                return await usage_repo.daily(session, tenant_id=None, since=since, until=until)
        tenant_id = principal.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            return await usage_repo.daily(session, tenant_id=tenant_id, since=since, until=until)

    async def events(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[UsageEvent], int]:
        tenant_id = principal.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            return await usage_repo.events_page(
                session, tenant_id=tenant_id, limit=limit, offset=offset
            )

    async def prompt_logs(
        self, principal: Principal, *, limit: int, offset: int
    ) -> tuple[list[PromptLog], int]:
        tenant_id = principal.require_tenant_admin()
        async with self.db.tenant(tenant_id) as session:
            return await usage_repo.prompt_logs_page(
                session, tenant_id=tenant_id, limit=limit, offset=offset
            )

    async def month_spend(
        self, tenant_id: uuid.UUID, api_key_id: uuid.UUID | None, kind: str
    ) -> int:
        """This month's spend from the ledger: micro-dollars (rounded up) or tokens."""
        now = datetime.now(UTC)
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
        async with self.db.tenant(tenant_id) as session:
            cost, tokens = await usage_repo.month_spend(
                session, tenant_id=tenant_id, api_key_id=api_key_id, since=start
            )
        return micro_usd(cost) if kind == "usd" else tokens
