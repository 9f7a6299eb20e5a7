"""Support tools: look up an order and issue a refund into a SQL ledger.

The ledger lives in the Airlock database (tables ``support_orders`` and
``support_refunds``, created by the store's migrations). A refund row is keyed by the action's idempotency key,
so a retried execution returns the first refund instead of paying twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field as Column
from sqlmodel import Session, SQLModel, select

from engine.store.db import Database
from engine.toolkit import DecimalText, ToolContext, tool

ORDER_ID = r"^[A-Z]-\d{4}$"


class Order(SQLModel, table=True):
    __tablename__ = "support_orders"

    order_id: str = Column(primary_key=True)
    customer_id: str = Column(index=True)
    total: Decimal = Column(max_digits=12, decimal_places=2)
    currency: str = "EUR"
    item: str = ""


class Refund(SQLModel, table=True):
    __tablename__ = "support_refunds"

    refund_id: int | None = Column(default=None, primary_key=True)
    idempotency_key: str = Column(unique=True)
    order_id: str = Column(index=True)
    amount: Decimal = Column(max_digits=12, decimal_places=2)
    currency: str
    reason: str
    created_at: datetime = Column(default_factory=lambda: datetime.now(UTC))


@lru_cache(maxsize=8)
def ledger(database_url: str) -> Engine:
    """The ledger's engine; a database not yet migrated (so without the ledger's tables) is migrated first."""
    return Database(database_url).ready().engine


DEMO_ORDERS = [
    Order(order_id="A-1001", customer_id="cus_ana", total=Decimal("40.00"), item="desk lamp"),
    Order(order_id="A-1002", customer_id="cus_ana", total=Decimal("320.00"), item="office chair"),
    Order(order_id="A-1003", customer_id="cus_ana", total=Decimal("1200.00"), item="standing desk"),
    Order(order_id="B-2001", customer_id="cus_ben", total=Decimal("90.00"), item="keyboard"),
]


def seed_demo_orders(database_url: str) -> None:
    """Put the demo orders in the ledger (idempotent)."""
    with Session(ledger(database_url)) as session:
        for order in DEMO_ORDERS:
            if session.get(Order, order.order_id) is None:
                session.add(Order.model_validate(order.model_dump()))
        session.commit()


def reset_demo_ledger(database_url: str) -> None:
    """Remove the demo orders' refunds and (re)seed them, so the demo can run again."""
    seed_demo_orders(database_url)
    with Session(ledger(database_url)) as session:
        ids = [o.order_id for o in DEMO_ORDERS]
        for refund in session.exec(select(Refund).where(Refund.order_id.in_(ids))).all():  # type: ignore[attr-defined]
            session.delete(refund)
        session.commit()


def refunded_total(session: Session, order_id: str) -> Decimal:
    """What has been refunded on an order so far."""
    total = session.exec(select(func.coalesce(func.sum(Refund.amount), 0)).where(Refund.order_id == order_id)).one()
    return Decimal(str(total))


class LookupOrderArgs(BaseModel):
    """Arguments of ``lookup_order``."""

    order_id: str = Field(pattern=ORDER_ID, description="Order id, e.g. A-1001")


@tool(consequential=False, trusted=True)  # the shop's own ledger: nothing in it is a third party's text
def lookup_order(args: LookupOrderArgs, ctx: ToolContext) -> dict[str, Any]:
    """Look up an order: customer, item, total and what was already refunded."""
    with Session(ledger(ctx.database_url)) as session:
        order = session.get(Order, args.order_id)
        if order is None:
            raise LookupError(f"order {args.order_id} does not exist")
        return {"order_id": order.order_id, "customer_id": order.customer_id, "item": order.item,
                "total": str(order.total), "currency": order.currency,
                "refunded": str(refunded_total(session, order.order_id))}


class RefundArgs(BaseModel):
    """Arguments of ``issue_refund``."""

    order_id: str = Field(pattern=ORDER_ID, description="Order to refund")
    amount: DecimalText = Field(gt=0, max_digits=12, decimal_places=2, description="Amount in the order's currency")
    reason: str = Field(min_length=3, max_length=500, description="Why the customer gets this refund")


def refund_facts(args: RefundArgs, ctx: ToolContext) -> dict[str, Any]:
    """Facts the refund policy needs: whose order it is and what is left to refund."""
    with Session(ledger(ctx.database_url)) as session:
        order = session.get(Order, args.order_id)
        if order is None:
            return {"order": {"exists": False}}
        refunded = refunded_total(session, order.order_id)
        return {"order": {"exists": True, "customer_id": order.customer_id, "total": str(order.total),
                          "currency": order.currency, "refunded": str(refunded),
                          "refundable": str(order.total - refunded)}}


def refund_order(args: RefundArgs, ctx: ToolContext) -> str:
    """What a refund touches: its order (refunds of one order run one at a time)."""
    return f"support-order:{args.order_id}"


@tool(consequential=True, facts=refund_facts, serialize=refund_order)
def issue_refund(args: RefundArgs, ctx: ToolContext) -> dict[str, Any]:
    """Refund part or all of an order to the customer's original payment method."""
    with Session(ledger(ctx.database_url)) as session:
        existing = session.exec(select(Refund).where(Refund.idempotency_key == ctx.idempotency_key)).first()
        if existing is None:
            order = session.get(Order, args.order_id)
            if order is None:
                raise LookupError(f"order {args.order_id} does not exist")
            if refunded_total(session, order.order_id) + args.amount > order.total:
                raise ValueError(f"refund of {args.amount} exceeds what is left on order {order.order_id}")
            session.add(Refund(idempotency_key=ctx.idempotency_key, order_id=order.order_id, amount=args.amount,
                               currency=order.currency, reason=args.reason))
            try:
                session.commit()
            except IntegrityError:  # a concurrent attempt of the same action won the insert
                session.rollback()
            existing = session.exec(select(Refund).where(Refund.idempotency_key == ctx.idempotency_key)).one()
        return {"refund_id": existing.refund_id, "order_id": existing.order_id, "amount": str(existing.amount),
                "currency": existing.currency}


class RefundOutcome(BaseModel):
    """A support run's final answer as data (a workflow's ``output_schema``)."""

    customer_id: str = Field(pattern=r"^cus_[a-z0-9]+$")
    refunded_orders: list[str] = Field(default_factory=list, description="Order ids refunded in this run")
    message: str = Field(min_length=1, description="What to tell the customer")


def list_refunds(database_url: str) -> list[Refund]:
    """Every refund in the ledger, oldest first (for the demo's closing summary)."""
    with Session(ledger(database_url)) as session:
        return list(session.exec(select(Refund).order_by(Refund.refund_id)).all())  # type: ignore[arg-type]
