"""The accounts that sign chain transactions: ``airlock doctor`` and ``airlock senders release``.

``doctor`` only reads (the store and the node; no key needed) and exits 1 when
a transaction is stuck. ``senders release`` signs with the configured key:
a no-op (a 0-value transfer to the account itself) takes the nonce, after a
confirmation; the no-op's record (who, why, what it replaced) is the audit
entry, and the transaction it replaced is recorded as dropped with that reason.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

import typer

from engine.cli._app import JSON, _database, _fail, _host, _settings, app
from engine.errors import AirlockError

if TYPE_CHECKING:
    from engine.adapters.chain_doctor import SenderReport
    from engine.store.authority import KeptLease

senders_app = typer.Typer(help="The accounts that sign chain transactions.", no_args_is_help=True)
app.add_typer(senders_app, name="senders")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} h"


@app.command()
def doctor(as_json: bool = JSON) -> None:
    """Chain transactions stuck past AIRLOCK_CHAIN__STUCK_AFTER_S, nonce gaps, and the command that clears each;
    warns of transactions recorded as mined that the node no longer has, and of accounts kept for an execution
    a dead worker began. Exit 1 when a transaction is stuck (or the node cannot be read)."""
    from engine.adapters.chain import Chain
    from engine.adapters.chain_doctor import inspect_senders
    from engine.store.authority import kept_leases

    settings = _settings()
    chain_settings = settings.chain
    kept = _database(settings).call(kept_leases)  # read from the store alone: shown without the node too
    try:
        chain = Chain(chain_settings.rpc_url, timeout_s=chain_settings.rpc_timeout_s)
        reports = inspect_senders(chain, _database(settings), chain_id=chain_settings.chain_id,
                                  confirmations=chain_settings.confirmations,
                                  stuck_after_s=chain_settings.stuck_after_s)
    except AirlockError as exc:
        if as_json:
            print(json.dumps({"chain_id": chain_settings.chain_id, "error": str(exc), "senders": [],
                              "kept_leases": [_kept_json(k) for k in kept]}))
            raise typer.Exit(1) from None
        _print_kept(kept)
        _fail(str(exc))
    if as_json:
        print(json.dumps({"chain_id": chain_settings.chain_id, "rpc": chain.shown_url, "error": None,
                          "senders": [_report_json(r) for r in reports],
                          "kept_leases": [_kept_json(k) for k in kept]}))
    else:
        _print_reports(chain_settings.chain_id, chain.shown_url, reports)
        _print_kept(kept)
    if any(r.stuck for r in reports):
        raise typer.Exit(1)


def _print_reports(chain_id: int, shown_url: str, reports: list[SenderReport]) -> None:
    from engine.adapters.chain_doctor import describe, nonces_text

    print(f"chain {chain_id} at {shown_url}")
    if not reports:
        print("no transactions recorded on this chain")
    for r in reports:
        print(f"sender {r.sender}: {r.latest_nonce} transactions mined, next nonce {r.pending_nonce} (with the "
              f"node's pool); {r.open_count} on their way in the store")
        for s in r.stuck:
            print(f"  stuck: nonce {s.tx.nonce} {s.tx.tx_hash} ({describe(s.tx)}), {s.tx.status} "
                  f"{_ago(s.age_s)} ago: {s.state}: {s.advice}")
            if s.gap:
                print(f"    nonces {nonces_text(s.gap)} below it: nothing holds them")
            if s.command:
                print(f"    clear it: {s.command}")
        for tx in r.lost_mined:
            print(f"  warning: nonce {tx.nonce} {tx.tx_hash} ({describe(tx)}) is recorded as mined in block "
                  f"{tx.block_number}, but the node has no receipt: the chain was reset or reorganised. Airlock "
                  "does not replay it; check the recipient and propose it again if it is still wanted")
    if not any(r.stuck for r in reports):
        print("no stuck transactions")


def _report_json(r: SenderReport) -> dict[str, Any]:
    from engine.adapters.chain_doctor import describe

    return {"sender": r.sender, "latest_nonce": r.latest_nonce, "pending_nonce": r.pending_nonce,
            "open_count": r.open_count,
            "stuck": [{"nonce": s.tx.nonce, "tx_hash": s.tx.tx_hash, "action": describe(s.tx), "status": s.tx.status,
                       "age_s": round(s.age_s, 1), "state": s.state, "advice": s.advice, "gap": s.gap,
                       "command": s.command} for s in r.stuck],
            "lost_mined": [{"nonce": tx.nonce, "tx_hash": tx.tx_hash, "action": describe(tx),
                            "block_number": tx.block_number} for tx in r.lost_mined]}


def _kept_json(kept: KeptLease) -> dict[str, Any]:
    return kept.model_dump(mode="json")


def _print_kept(kept_leases: list[KeptLease]) -> None:
    """Warn of leases kept past their time for executions a dead worker began (not an error: the
    execution's retry resumes it once a worker runs)."""
    from engine.store.tables import utcnow

    now = utcnow()
    for kept in kept_leases:
        print(f"waiting: {kept.lock_key} is kept for run {kept.run_id}, whose {kept.tool} began "
              f"{_ago((now - kept.began_at).total_seconds())} ago and has not ended (its lease ran out "
              f"{_ago((now - kept.expired_at).total_seconds())} ago); other actions on it wait for that "
              "execution's retry: start a worker, or close the run in Temporal to let them go")


@senders_app.command("release")
def release(nonce: int = typer.Option(..., "--nonce", min=0, help="The nonce to release (see `airlock doctor`)."),
            reason: str = typer.Option("", "--reason", help="Why (kept with the no-op's record)."),
            yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Release a nonce held by a transaction that will not be mined: a no-op takes it (outbidding that
    transaction), so it can never be mined, and its action's record becomes dropped. Nonces below it that
    nothing holds are filled first. If the chain already used the nonce, only the records are brought up to date."""
    from engine.adapters.chain_access import ChainAccess
    from engine.adapters.chain_doctor import describe, nonces_text

    settings = _settings()
    try:
        access = ChainAccess.from_settings(settings.chain, _database(settings))
        sender = access.sender()
        plan = sender.release_plan(nonce)
    except AirlockError as exc:
        _fail(str(exc))
    print(f"sender {plan.sender} on chain {access.chain_id} at {access.chain.shown_url}: {plan.latest_nonce} "
          f"transactions mined, next nonce {plan.pending_nonce} (with the node's pool)")
    if plan.pointless:
        _fail(f"nothing holds nonce {nonce} and nothing of ours waits behind it: there is nothing to release")
    if plan.used:
        print(f"nonce {nonce} is already used on chain: nothing will be sent; its records are brought up to date")
    else:
        for tx in plan.replaces:
            print(f"  replaces {tx.tx_hash} ({describe(tx)}, {tx.status}): it will never be mined; its action "
                  "fails as dropped")
        print(f"  sends a no-op (0-value transfer to {plan.sender}) at nonce {nonce}")
        if plan.gap:
            print(f"  then fills nonces {nonces_text(plan.gap)} below it, which nothing holds (no-ops, or "
                  "ours on their way sent again)")
    if not yes:
        if not sys.stdin.isatty():
            _fail("confirm with --yes (no terminal to ask on)", 2)
        typer.confirm(f"release nonce {nonce}?", abort=True)
    try:
        print(sender.release(plan, reason=reason.strip()[:200] or "no reason given",
                             by=f"{getpass.getuser()}@{_host()}"))
    except AirlockError as exc:
        _fail(str(exc))
