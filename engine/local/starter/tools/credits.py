"""Account credit: the tool the model may propose, the facts its policy reads, and the record it keeps.

Replace ``CUSTOMERS`` and the ``credits`` table with your own systems; keep the
shape: arguments as a pydantic model, facts read-only, the effect keyed by
``ctx.idempotency_key`` so a retried execution never grants twice.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field

from engine.toolkit import DecimalText, ToolContext, tool

#: Stand-in for a customer system: who exists.
CUSTOMERS = {"cus_ana": "Ana Lima", "cus_ben": "Ben Okafor"}

_metadata = sa.MetaData()
credits = sa.Table(
    "starter_credits", _metadata,
    sa.Column("idempotency_key", sa.String(300), primary_key=True),  # one row per action, however often it runs
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("amount", sa.Numeric(10, 2), nullable=False),
    sa.Column("reason", sa.String(300), nullable=False),
    sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
)


@functools.cache
def _engine(database_url: str) -> sa.Engine:
    engine = sa.create_engine(database_url)
    try:
        _metadata.create_all(engine)  # checkfirst: creates the table once
    except sa.exc.DBAPIError:  # another worker, starting too, created it between the check and the create
        if not sa.inspect(engine).has_table(credits.name):
            raise
    return engine


class CreditArgs(BaseModel):
    """Arguments of ``grant_credit`` (the schema the model sees)."""

    customer_id: str = Field(pattern=r"^cus_[a-z0-9]{1,32}$", description="The customer, e.g. cus_ana")
    amount: DecimalText = Field(gt=0, max_digits=8, decimal_places=2, description="Credit, e.g. \"12.50\"")
    reason: str = Field(min_length=3, max_length=300, description="Why the customer gets this credit")


def _granted_since(conn: sa.Connection, customer_id: str, since: datetime) -> Decimal:
    total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(credits.c.amount), 0))
                         .where(credits.c.customer_id == customer_id, credits.c.granted_at >= since)).scalar_one()
    return Decimal(str(total))


def credit_facts(args: CreditArgs, ctx: ToolContext) -> dict[str, Any]:
    """What the policy checks the call against (read-only; read again right before the credit is granted)."""
    with _engine(ctx.database_url).connect() as conn:
        granted = _granted_since(conn, args.customer_id, datetime.now(UTC) - timedelta(days=30))
    return {"customer": {"exists": args.customer_id in CUSTOMERS}, "granted_30d": str(granted)}


def credit_account(args: CreditArgs, ctx: ToolContext) -> str:
    """What a credit touches: one customer's account (credits to it run one at a time)."""
    return f"credit:{args.customer_id}"


@tool(consequential=True, facts=credit_facts, serialize=credit_account)
def grant_credit(args: CreditArgs, ctx: ToolContext) -> dict[str, Any]:
    """Add account credit for a customer who had a service problem."""
    with _engine(ctx.database_url).begin() as conn:
        row = conn.execute(sa.select(credits).where(credits.c.idempotency_key == ctx.idempotency_key)).first()
        if row is None:  # first execution of this action
            conn.execute(credits.insert().values(idempotency_key=ctx.idempotency_key, customer_id=args.customer_id,
                                                 amount=args.amount, reason=args.reason,
                                                 granted_at=datetime.now(UTC)))
            row = conn.execute(sa.select(credits).where(credits.c.idempotency_key == ctx.idempotency_key)).one()
    return {"customer_id": row.customer_id, "amount": str(row.amount), "credit_id": row.idempotency_key}
