"""Gateway parity (issue 16): prompt-cache prices and capability flags in the catalog; cached,
reasoning and tool-call counts in the usage ledger; the answer's tool calls in prompt logs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Every new column is on an existing table and carries that table's grants (0011): `models`
stays read-only to the app role and written in the platform scope; the ledger tables keep
the app role's SELECT/INSERT (and UPDATE on usage_daily, whose roll-ups add up). None of the
column-level grants of 0011 (users' identity columns) are involved.

Existing models get no cache prices (cached tokens cost the input price), every capability
(an absent flag is True) and no dropping; existing ledger rows count zero of the new kinds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTERS = ("cached_read_tokens", "cached_write_tokens", "reasoning_tokens")


def upgrade() -> None:
    op.add_column("models", sa.Column("cached_input_price_per_1m", sa.Numeric(14, 6)))
    op.add_column("models", sa.Column("cache_write_price_per_1m", sa.Numeric(14, 6)))
    op.add_column(
        "models",
        sa.Column("capabilities", pg.JSONB, nullable=False, server_default=sa.text("'{}'")),
    )
    op.add_column(
        "models", sa.Column("drop_params", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_check_constraint(
        "models_capabilities_object", "models", "jsonb_typeof(capabilities) = 'object'"
    )

    for name in (*_COUNTERS, "tool_calls"):
        op.add_column(
            "usage_events",
            sa.Column(name, sa.Integer, nullable=False, server_default=sa.text("0")),
        )
    op.add_column("usage_events", sa.Column("end_user", sa.String(256)))
    # The daily roll-ups the usage report sums: the same counters, per tenant, day and model.
    for name in _COUNTERS:
        op.add_column(
            "usage_daily",
            sa.Column(name, sa.BigInteger, nullable=False, server_default=sa.text("0")),
        )

    op.add_column(
        "prompt_logs",
        sa.Column("tool_calls", pg.JSONB, nullable=False, server_default=sa.text("'[]'")),
    )
    op.create_check_constraint(
        "prompt_logs_tool_calls_array", "prompt_logs", "jsonb_typeof(tool_calls) = 'array'"
    )


def downgrade() -> None:
    op.drop_constraint("prompt_logs_tool_calls_array", "prompt_logs", type_="check")
    op.drop_column("prompt_logs", "tool_calls")
    for name in _COUNTERS:
        op.drop_column("usage_daily", name)
    op.drop_column("usage_events", "end_user")
    for name in (*_COUNTERS, "tool_calls"):
        op.drop_column("usage_events", name)
    op.drop_constraint("models_capabilities_object", "models", type_="check")
    for name in (
        "drop_params",
        "capabilities",
        "cache_write_price_per_1m",
        "cached_input_price_per_1m",
    ):
        op.drop_column("models", name)
