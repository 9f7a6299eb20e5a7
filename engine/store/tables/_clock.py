"""The clock rows are stamped with outside workflows."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware now, for rows written outside workflows."""
    return datetime.now(UTC)
