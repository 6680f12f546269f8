"""Server-made request ids key the usage ledger and prompt logs per tenant (security finding 2).

The ledger and the prompt logs were keyed on the request id alone, and that id came from the
client: one fixed X-Request-ID made every later request a duplicate that was never recorded.
Request ids are now made by the server; the keys become (tenant_id, request_id), and the client's
own id is kept beside the usage row for correlation.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("usage_events", sa.Column("client_request_id", sa.String(64), nullable=True))
    for table in ("usage_events", "prompt_logs"):
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, ["tenant_id", "request_id"])


# Ids are unique per tenant only once upgraded; the old key cannot hold two tenants' rows with one
# id, and deleting ledger rows to make it fit would lose usage: the downgrade refuses instead.
_SHARED_IDS = {
    "usage_events": "SELECT 1 FROM usage_events GROUP BY request_id HAVING count(*) > 1",
    "prompt_logs": "SELECT 1 FROM prompt_logs GROUP BY request_id HAVING count(*) > 1",
}


def downgrade() -> None:
    bind = op.get_bind()
    for table, shared in _SHARED_IDS.items():
        if bind.execute(sa.text(shared)).first() is not None:
            raise RuntimeError(
                f"{table} holds one request id for several tenants; downgrading past 0010 would "
                "lose usage rows. Export the usage first, or stay on this revision."
            )
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, ["request_id"])
    op.drop_column("usage_events", "client_request_id")
