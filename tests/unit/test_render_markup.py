"""What the model, a policy, a chain or a person wrote is shown as text in the terminal, never read as Rich markup:
a model's reason ending in ``[conceal]`` hid the simulation and the policy's reasons from an approver reviewing
in the terminal, and one with ``[/evil]`` crashed ``airlock approvals show``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from engine.cli.render import approval_panel
from engine.store.repo import ApprovalView

HOSTILE = ["Routine refund, within limits.[conceal]", "Customer asked nicely [/evil]", "[link=https://x.example]",
           "[bold red on white]URGENT[/]", "Routine refund.\x1b[8m", "up\x1b[A\x1b[2K\r", "\u202egnp.exe",
           "\x1b]8;;https://x.example\x1b\\link\x1b]8;;\x1b\\"]


def _as_shown(text: str) -> str:
    """What the terminal must show: control characters as their escapes."""
    return "".join(c.encode("unicode_escape").decode() if c in "\x1b\r\u202e" else c for c in text)


def _item(text: str) -> ApprovalView:
    now = datetime.now(UTC)
    return ApprovalView(
        approval_id="apr_0123456789ab", run_id=f"run-{text}", workflow=f"wf{text}", version=1, tool=f"pay{text}",
        args={"to": "0x90F79bf6EB2c4f870365E785982E1f101E93b906"},
        facts={"simulation": {"ok": False, "method": "transfer", "gas_used": 1, "revert_reason": f"no {text}",
                              "balance_changes": [{"account": f"0xTREASURY{text}", "asset": f"tUSD{text}",
                                                   "before": "1000", "after": "50", "delta": "-950"}]}},
        model_reason=text, policy_reasons=[f"customer flagged for fraud {text}"], approvers=[f"leads{text}"],
        min_approvals=1, policy_revision=None, digest="sha256:00", requested_by=f"alice{text}", tenant="default",
        status="pending", votes=[], reason=None, created_at=now, expires_at=now + timedelta(hours=24),
        decided_at=None)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_shown_as_written_and_hides_nothing(text: str) -> None:
    console = Console(record=True, width=400, color_system="truecolor", force_terminal=True)
    console.print(approval_panel(_item(text)), highlight=False)
    shown = console.export_text(styles=False)
    as_shown = _as_shown(text)
    for part in (f"model's reason: {as_shown}", f"customer flagged for fraud {as_shown}",
                 f"0xTREASURY{as_shown} tUSD{as_shown}", f"reverts: no {as_shown}",
                 f"pay{as_shown} in wf{as_shown} v1, run run-{as_shown}", f"requested by: alice{as_shown}",
                 f"approvers: leads{as_shown}"):
        assert part in shown, part
    styled = console.export_text(styles=True)
    assert "\x1b[8m" not in styled and "\x1b[A" not in styled and "\x1b]8" not in styled  # nothing hidden or moved
    assert "\r" not in shown and "\u202e" not in shown
