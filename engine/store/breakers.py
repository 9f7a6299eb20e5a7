"""The model endpoints' circuit breakers, in the database every worker shares.

An endpoint that failed on one worker is skipped by all of them, and counting
a failure is one atomic statement, so workers failing at once lose no count.
Endpoints are keyed by a hash (their URL may carry a provider's key); the row
keeps the endpoint's label, as shown everywhere, for an operator.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.store.tables import ModelBreakerRow, utcnow


class BreakerRecord(BaseModel):
    """One endpoint's breaker as recorded."""

    failures: int
    open_until: datetime | None


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def breaker_states(session: Session, *, keys: list[str]) -> dict[str, BreakerRecord]:
    """The recorded breakers among these endpoints (one with no row has never failed)."""
    rows = session.exec(select(ModelBreakerRow).where(col(ModelBreakerRow.endpoint_key).in_(keys))).all()
    return {r.endpoint_key: BreakerRecord(failures=r.failures, open_until=_aware(r.open_until)) for r in rows}


def count_breaker_failure(session: Session, *, key: str, endpoint: str) -> int:
    """One more failure in a row of an endpoint; the count now."""
    for _ in range(3):  # the first failure of an endpoint inserts its row, and two workers may race to
        counted = session.execute(update(ModelBreakerRow).where(col(ModelBreakerRow.endpoint_key) == key)
                                  .values(failures=col(ModelBreakerRow.failures) + 1, updated_at=utcnow())
                                  .returning(col(ModelBreakerRow.failures))).scalar_one_or_none()
        if counted is not None:
            session.commit()
            return int(counted)
        session.add(ModelBreakerRow(endpoint_key=key, endpoint=endpoint, failures=1))
        try:
            session.commit()
            return 1
        except IntegrityError:
            session.rollback()
    raise RuntimeError(f"the breaker of {endpoint} could not be counted")  # pragma: no cover - three lost races


def open_breaker(session: Session, *, key: str, until: datetime) -> None:
    """Skip the endpoint until then."""
    session.execute(update(ModelBreakerRow).where(col(ModelBreakerRow.endpoint_key) == key)
                    .values(open_until=until, updated_at=utcnow()))
    session.commit()


def close_breaker(session: Session, *, key: str) -> None:
    """The endpoint answered: no failures in a row, not skipped."""
    session.execute(update(ModelBreakerRow).where(col(ModelBreakerRow.endpoint_key) == key,
                                                  col(ModelBreakerRow.failures) > 0)
                    .values(failures=0, open_until=None, updated_at=utcnow()))
    session.commit()
