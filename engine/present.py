"""Plain-text wording shared by the terminal (``engine.cli.render``) and the web pages (``engine.ui.format``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from engine.store.repo import TimelineEntry

_PAST = {"approve": "approved", "reject": "rejected", "edit": "edited"}


def args_summary(args: dict[str, Any], width: int = 60) -> str:
    """``k=v, k=v`` on one line, shortened to ``width``."""
    text = ", ".join(f"{k}={v}" for k, v in args.items())
    return text if len(text) <= width else text[: width - 1] + "…"


SHOWN_SOURCES = 3  # of an argument's sources, people see the first few (and how many more there are)


def origin_of(provenance: dict[str, Any], key: str) -> dict[str, Any] | None:
    """Where argument ``key`` came from, as a person deciding is shown it (None: not traced).

    ``made_up``: found nowhere the run has seen; ``trusted``: at least one trusted source; ``sources``: the
    first few, each ``{from, field, context, trusted}`` as text; ``more``: how many are not listed.
    """
    entry = provenance.get(key)
    if not isinstance(entry, dict):
        return None
    found = [s for s in entry.get("sources") or [] if isinstance(s, dict)]
    return {"trusted": entry.get("trusted") is True, "made_up": not found, "more": max(0, len(found) - SHOWN_SOURCES),
            "sources": [{"from": str(s.get("from") or "?"), "field": str(s.get("field") or ""),
                         "context": str(s.get("context") or ""), "trusted": s.get("trusted") is True}
                        for s in found[:SHOWN_SOURCES]]}


def waited(since: datetime) -> str:
    """``3m`` / ``2h`` since a time."""
    seconds = int((datetime.now(UTC) - since.replace(tzinfo=since.tzinfo or UTC)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def usage_of(timeline: Sequence[TimelineEntry]) -> dict[str, Any]:
    """Model calls, tokens, cost and fallbacks of a run, from its timeline."""
    models = [e.data for e in timeline if e.kind == "model"]
    return {"model_calls": len(models),
            "input_tokens": sum(m.get("input_tokens", 0) for m in models),
            "output_tokens": sum(m.get("output_tokens", 0) for m in models),
            "cost": round(sum(m.get("cost", 0.0) for m in models), 8),
            "fallbacks": sum(1 for m in models if m.get("fallback_used"))}


class TimelineLine(TimelineEntry):
    """A timeline entry with the sentence the terminal, the pages and the API show for it."""

    summary: str


def described(timeline: list[TimelineEntry]) -> list[TimelineLine]:
    """Each entry of a run's timeline with its sentence."""
    return [TimelineLine(**e.model_dump(), summary=_sentence(e.kind, e.data)) for e in timeline]


def _sentence(kind: str, d: dict[str, Any]) -> str:
    if kind == "model":
        failed = [a for a in d.get("attempts") or [] if a.get("error")]
        text = (f"{d['model']} via {d['endpoint']}" + (f" [{d['step_class']}]" if d.get("step_class") else "") +
                f": {d['input_tokens']} in / {d['output_tokens']} out tokens, "
                f"cost {d['cost']:g}, {d['tool_calls']} tool call(s) proposed")
        if d.get("fallback_used") or failed:
            text += " — fallback after " + "; ".join(f"{a['endpoint']}: {a['error']}" for a in failed)
        return text
    if kind == "validation":
        what = "arguments of " + d["subject"] if d["kind"] == "tool_arguments" else "final answer"
        return f"{what}: " + ("valid" if d["ok"] else f"invalid — {d['error']}")
    if kind == "policy":
        cause = d.get("cause")
        why = f" [{cause}]" if cause and cause != "proposed" else ""
        text = f"{d['tool']}: {d['outcome']} — {'; '.join(d['reasons'])} (revision {d['revision']}){why}"
        if (shadow := d.get("shadow")) is not None:
            text += (f"; shadow policy {shadow['package']} agrees" if shadow["outcome"] == d["outcome"] else
                     f"; shadow policy {shadow['package']} would have: {shadow['outcome']} — "
                     f"{'; '.join(shadow['reasons'])}")
        return text
    if kind == "execution":
        tx = d.get("tx_hash")
        return f"{d['tool']}: {d['status']}" + (f" — {d['error']}" if d.get("error") else "") + (
            f" (tx {tx})" if tx else "")
    if kind == "approval" and d.get("action") == "request":
        return (f"{d['approval_id']} requested for {d['tool']}: needs {d['min_approvals']} of "
                f"{', '.join(d['approvers']) or 'anyone'}")
    if kind == "approval" and d.get("action") == "queue":
        return (f"{d['actor']}'s {d['decision']} on {d['approval_id']} queued for delivery at {d['queued_at']} "
                "(no worker took it in time)")
    if kind == "approval" and d.get("action") == "delivery":
        what = f"{d['actor']}'s queued {d['decision']} on {d['approval_id']}"
        if d.get("status") == "applied":
            return f"{what} applied" + (f": {d['result']}" if d.get("result") else "")
        return f"{what} {d.get('status')}" + (f": {d['reason']}" if d.get("reason") else "") + (
            " (it did not count)" if d.get("status") == "withdrawn" else "")
    if kind == "approval":
        done = _PAST.get(d["action"], d["action"])
        return f"{d['actor']} {done} {d['approval_id']}" + (f": {d['comment']}" if d.get("comment") else "")
    return f"run {d['status']}" + (f" — {d['reason']}" if d.get("reason") else "")
