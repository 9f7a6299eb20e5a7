"""Template helpers: legible arguments, amounts with units, durations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from engine.adapters.chain import checksum
from engine.present import args_summary, origin_of, waited


def _find(data: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in nested dicts."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            if (found := _find(value, key)) is not None:
                return found
    return None


def label(key: str) -> str:
    """``order_id`` → ``Order id``."""
    return key.replace("_", " ").capitalize()


def argument_rows(args: dict[str, Any], facts: dict[str, Any], names: dict[str, str] | None = None,
                  provenance: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per argument: label, shown value, a kind for styling, what the policy data calls it, and where
    it came from (``origin``, see ``engine.present.origin_of``; None when not traced)."""
    currency = _find(args, "currency") or _find(facts, "currency") or _find(facts.get("token"), "symbol") or ""
    rows = []
    for key, value in args.items():
        address = checksum(value) if isinstance(value, str) else None
        kind = "amount" if "amount" in key else ("id" if address or key.endswith("_id") else "text")
        shown = address or (f"{value} {currency}".strip() if kind == "amount" else str(value))
        rows.append({"label": label(key), "value": shown, "kind": kind,
                     "known_as": (names or {}).get(str(value).lower(), ""),
                     "origin": origin_of(provenance or {}, key)})
    return rows


def fact_rows(facts: dict[str, Any], names: dict[str, str] | None = None, prefix: str = "") -> list[dict[str, str]]:
    """Nested facts flattened to ``Order · customer id`` rows, with what the policy data calls each value."""
    rows = []
    for key, value in facts.items():
        if not prefix and key == "simulation":  # shown as its own table (simulation())
            continue
        name = f"{prefix} · {label(key).lower()}" if prefix else label(key)
        if isinstance(value, dict):
            rows += fact_rows(value, names, name)
        else:
            shown = checksum(value) if isinstance(value, str) else None
            rows.append({"label": name, "value": shown or str(value),
                         "known_as": (names or {}).get(str(value).lower(), "")})
    return rows


def simulation(facts: dict[str, Any], names: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The simulated transaction for the detail page: outcome and one row per balance change."""
    sim = facts.get("simulation")
    if not isinstance(sim, dict):
        return None
    changes = [{"account": checksum(c.get("account", "")) or c.get("account"), "asset": c.get("asset") or "",
                "before": c.get("before"), "after": c.get("after"), "delta": c.get("delta"),
                "known_as": (names or {}).get(str(c.get("account", "")).lower(), "")}
               for c in sim.get("balance_changes") or []]
    return {"ok": bool(sim.get("ok")), "method": sim.get("method", ""), "revert_reason": sim.get("revert_reason"),
            "gas_used": sim.get("gas_used"), "changes": changes}


def until(moment: datetime) -> str:
    """``in 23h`` / ``expired``."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = int((moment - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return "expired"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {seconds // size}{unit}"
    return f"in {seconds}s"


def percent(rate: float | None) -> str:
    """``0.125`` → ``12.5%``; a rate with nothing to divide by → ``–``."""
    return "–" if rate is None else f"{rate * 100:.1f}%"


def register_filters(env: Environment) -> None:
    """Make the helpers available in templates."""
    env.filters.update(ago=waited, until=until, summary=args_summary, label=label, percent=percent)
    env.globals.update(argument_rows=argument_rows, fact_rows=fact_rows, simulation=simulation)
