"""Plain-text wording shared by the terminal (``engine.cli.render``) and the web pages (``engine.ui.format``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from engine.store.repo import TimelineEntry


def args_summary(args: dict[str, Any], width: int = 60) -> str:
    """``k=v, k=v`` on one line, shortened to ``width``."""
    text = ", ".join(f"{k}={v}" for k, v in args.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def waited(since: datetime) -> str:
    """``3m`` / ``2h`` since a time."""
    seconds = int((datetime.now(timezone.utc) - since.replace(tzinfo=since.tzinfo or timezone.utc)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def usage_of(timeline: list[TimelineEntry]) -> dict[str, Any]:
    """Model calls, tokens, cost and fallbacks of a run, from its timeline."""
    models = [e.data for e in timeline if e.kind == "model"]
    return {"model_calls": len(models),
            "input_tokens": sum(m.get("input_tokens", 0) for m in models),
            "output_tokens": sum(m.get("output_tokens", 0) for m in models),
            "cost": round(sum(m.get("cost", 0.0) for m in models), 8),
            "fallbacks": sum(1 for m in models if m.get("fallback_used"))}
