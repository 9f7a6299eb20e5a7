"""Who may decide a gated action, and how: one place for each rule, used by the worker's verification,
the run, execution and every door people decide through (pages, API, CLI)."""

from __future__ import annotations


def decision_refusal(*, person: str, roles: list[str], requester: str, editors: set[str] | list[str],
                     approvers: list[str]) -> str | None:
    """Why ``person`` may not approve, reject or edit this action, or None when they may.

    The requester never decides their own run's actions; whoever edited an
    action does not decide it afterwards; the person must hold one of the
    roles the decision names (no roles named: nobody may).
    """
    if person == requester:
        return f"{person} started this run and cannot decide its actions"
    if person in editors:
        return f"{person} edited this action and cannot decide it; someone else must"
    if not set(approvers) & set(roles):
        return (f"{person} does not hold a role that may decide this action "
                f"(needs one of: {', '.join(approvers) or 'none named'})")
    return None


def rejection_problem(decision: str, comment: str | None) -> str | None:
    """Why this decision cannot be taken as it is (a rejection must say why: it goes back to the model), or None."""
    if decision == "reject" and not (comment or "").strip():
        return "a rejection needs a reason; it goes back to the model"
    return None
