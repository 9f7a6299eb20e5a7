"""``airlock stats``: how runs went over a window, from the audit trail in SQL."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from engine.boundary.decision import UNAVAILABLE
from engine.errors import InputError
from engine.store.tables import ApprovalRow, ModelCallRow, PolicyDecisionRow, RunRow, ToolExecutionRow, utcnow

MAX_WINDOW = timedelta(days=3660)


def window(since: str, where: str = "since") -> timedelta:
    """A stats window from ``90m``, ``24h``, ``7d``: at least a minute, at most ten years.

    Raises:
        InputError: naming ``where`` and what a window looks like.
    """
    from engine.spec import parse_duration

    value = parse_duration(since)
    if not isinstance(value, timedelta) or not timedelta(minutes=1) <= value <= MAX_WINDOW:
        raise InputError(f"{where}: use a number and a unit between 1m and {MAX_WINDOW.days}d, like 90m, 24h "
                         f"or 7d, not {since[:40]!r}")
    return value


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return round(ordered[int(rank) - 1], 2)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _retries(result: dict[str, Any]) -> int:
    """How many times OPA was asked again for a stored decision (``PolicyDecision.attempts`` - 1; decisions
    stored before attempts were counted took one)."""
    attempts = result.get("attempts", 1)
    return attempts - 1 if isinstance(attempts, int) and attempts > 1 else 0


def _unavailable(result: dict[str, Any]) -> bool:
    """Whether a stored decision is the fail-closed denial given when OPA had no well-formed decision."""
    reasons = result.get("reasons")
    return isinstance(reasons, list) and reasons[:1] == [UNAVAILABLE]


def _buckets(start: datetime, end: datetime) -> tuple[str, list[datetime]]:
    """Hourly buckets for windows up to two days, daily ones beyond."""
    if end - start <= timedelta(hours=48):
        first, step, unit = start.replace(minute=0, second=0, microsecond=0), timedelta(hours=1), "hour"
    else:
        first, step, unit = start.replace(hour=0, minute=0, second=0, microsecond=0), timedelta(days=1), "day"
    edges = [first]
    while edges[-1] + step <= end:
        edges.append(edges[-1] + step)
    return unit, edges


def _series(runs: list[Any], models: list[Any], start: datetime, end: datetime) -> dict[str, Any]:
    """Runs by status and model cost per hour (or day): what the stats page plots over time."""
    unit, edges = _buckets(start, end)

    naive = [e.replace(tzinfo=None) for e in edges]

    def index(at: datetime) -> int:
        return max(0, bisect_right(naive, at.replace(tzinfo=None)) - 1)

    statuses = sorted({r.status for r in runs})
    by_status = {s: [0] * len(edges) for s in statuses}
    for r in runs:
        by_status[r.status][index(r.started_at)] += 1
    cost = [0.0] * len(edges)
    for m in models:
        cost[index(m.at)] += m.cost
    return {"unit": unit, "buckets": [e.strftime("%Y-%m-%dT%H:%M") for e in edges],  # UTC
            "runs_by_status": by_status, "cost": [round(c, 8) for c in cost]}


def stats(session: Session, *, since: timedelta, workflow: str | None = None,
          tenants: list[str] | None = None) -> dict[str, Any]:
    """Runs, latency per step kind, tokens and cost, boundary outcomes, OPA retries and fallbacks since
    ``now - since``."""
    end = utcnow()
    start: datetime = end - since
    query = select(RunRow).where(RunRow.started_at >= start)
    if workflow:
        query = query.where(RunRow.workflow == workflow)
    if tenants is not None:  # a person sees the runs of their own tenants only
        query = query.where(col(RunRow.tenant).in_(tenants))
    runs = session.exec(query).all()
    ids = [r.run_id for r in runs]

    def rows(table: Any) -> list[Any]:
        return list(session.exec(select(table).where(col(table.run_id).in_(ids))).all()) if ids else []

    models, decisions = rows(ModelCallRow), rows(PolicyDecisionRow)
    executions, approvals = rows(ToolExecutionRow), rows(ApprovalRow)
    by_status = Counter(r.status for r in runs)
    finished = sum(n for s, n in by_status.items() if s not in ("running", "waiting_approval"))
    completed = {r.run_id for r in runs if r.status == "completed"}
    tokens = sum(m.input_tokens + m.output_tokens for m in models)
    cost = sum(m.cost for m in models)
    outcomes = Counter(d.outcome for d in decisions)
    retries = [_retries(d.result) for d in decisions]
    verdicts = Counter(a.status for a in approvals)
    return {
        "since": start.isoformat(timespec="seconds"), "workflow": workflow,
        "runs": {"total": len(runs), "by_status": dict(sorted(by_status.items())),
                 "success_rate": _rate(by_status.get("completed", 0), finished)},
        "latency_ms": {kind: {"count": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}
                       for kind, values in (("model", [m.latency_ms for m in models]),
                                            ("policy", [d.latency_ms for d in decisions]),
                                            ("execution", [e.latency_ms for e in executions]))},
        "model": {"calls": len(models), "tokens": tokens, "cost": round(cost, 8),
                  "tokens_per_run": round(tokens / len(runs), 2) if runs else None,
                  "cost_per_run": round(cost / len(runs), 8) if runs else None,
                  "cost_per_successful_run":
                      round(sum(m.cost for m in models if m.run_id in completed) / len(completed), 8)
                      if completed else None,
                  "fallback_rate": _rate(sum(1 for m in models if m.fallback_used), len(models))},
        "boundary": {"decisions": len(decisions), "denial_rate": _rate(outcomes.get("deny", 0), len(decisions)),
                     "approval_rate": _rate(outcomes.get("require_approval", 0), len(decisions)),
                     "escalations": len(approvals), "approvals": dict(sorted(verdicts.items())),
                     "outcomes": dict(sorted(outcomes.items())),
                     "policy_retries": sum(retries), "retried_decisions": sum(1 for n in retries if n),
                     "policy_unavailable": sum(1 for d in decisions if _unavailable(d.result))},
        "shadow": _shadow(decisions),
        "series": _series(list(runs), models, start, end),
    }


def _shadow(decisions: list[Any]) -> dict[str, Any]:
    """Decisions a workflow's shadow policy also made: how many, and where it disagreed (by transition)."""
    shadowed = [d for d in decisions if d.shadow_outcome is not None]
    disagreements = Counter(f"{d.outcome}->{d.shadow_outcome}" for d in shadowed if d.shadow_outcome != d.outcome)
    return {"decisions": len(shadowed), "disagreements": sum(disagreements.values()),
            "by_transition": dict(sorted(disagreements.items())),
            "packages": sorted({d.shadow_package for d in shadowed if d.shadow_package})}
