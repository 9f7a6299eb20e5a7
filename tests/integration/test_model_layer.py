"""The model layer against a misbehaving OpenAI-compatible endpoint: fallback, circuit breaker, budgets, timeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.client import Client

from engine.config import Settings
from engine.present import described
from engine.store import repo
from engine.store.db import make_engine
from engine.store.tables import ModelCallRow
from tests.helpers import run_to_end, write_spec
from tests.integration.test_cli import airlock
from tools import support

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
LOOKUP = {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1001"}}]}


def faulty_spec(settings: Settings, tmp_path: Path, kind: str, turns: list[dict[str, Any]],
                spec_file: str = "spec.yaml", **model: Any) -> Any:
    """Primary: the scripted endpoint made to fail with ``kind``; fallback: the scripted endpoint itself."""
    script = tmp_path / spec_file.replace(".yaml", ".turns.yaml").replace("spec.turns", "turns")
    base = settings.llm.scripted_url.removesuffix("/v1") + f"/fault/{kind}/v1"
    return write_spec(tmp_path, turns, spec_file, model={
        "provider": "openai", "name": str(script), "script": str(script), "base_url": base, "timeout_s": 1.5,
        "price_in_per_1k": 0.5, "price_out_per_1k": 1.5,
        "fallbacks": [{"provider": "scripted", "price_in_per_1k": 0.1, "price_out_per_1k": 0.2}], **model})


def model_rows(settings: Settings, run_id: str) -> list[ModelCallRow]:
    with Session(make_engine(settings.db_url)) as session:
        return list(session.exec(select(ModelCallRow).where(ModelCallRow.run_id == run_id)
                                 .order_by(ModelCallRow.step)).all())


@pytest.mark.parametrize(("kind", "error"), [("429", "RateLimitError"), ("500", "InternalServerError"),
                                             ("timeout", "APITimeoutError"), ("malformed", "malformed answer")])
async def test_the_fallback_answers_when_the_primary_fails(client: Client, settings: Settings, tmp_path: Path,
                                                           kind: str, error: str) -> None:
    support.seed_demo_orders(settings.db_url)
    spec = faulty_spec(settings, tmp_path, kind, [LOOKUP, {"content": "The lamp order is A-1001."}])
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "completed" and result.tool_calls[0].outcome == "executed"
    rows = model_rows(settings, result.run_id)
    assert [r.fallback_used for r in rows] == [True, True]
    assert all(r.endpoint.startswith("scripted model") and r.model.startswith("scripted model") for r in rows)
    assert error in rows[0].attempts[0]["error"] and rows[0].attempts[1]["error"] is None
    assert rows[0].prompt_hash == spec.prompt_hash and rows[0].cost > 0
    # the fallback's own prices are charged
    assert rows[0].cost == pytest.approx(rows[0].input_tokens / 1000 * 0.1 + rows[0].output_tokens / 1000 * 0.2)
    assert result.usage["model_calls"] == 2
    with Session(make_engine(settings.db_url)) as session:
        timeline = described(repo.run_timeline(session, run_id=result.run_id))
    models = [e for e in timeline if e.kind == "model"]
    assert len(models) == 2 and "fallback after" in models[0].summary and error in models[0].summary
    assert [e.kind for e in timeline] == ["model", "validation", "policy", "execution", "model", "run"]


async def test_a_failing_endpoint_is_skipped_once_its_breaker_opens(client: Client, settings: Settings,
                                                                    tmp_path: Path) -> None:
    support.seed_demo_orders(settings.db_url)
    spec = faulty_spec(settings, tmp_path, "500", [LOOKUP, LOOKUP, LOOKUP, {"content": "done"}])
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "completed"
    firsts = [r.attempts[0]["error"] for r in model_rows(settings, result.run_id)]
    assert all("InternalServerError" in e for e in firsts[:3])
    assert firsts[3] == "circuit open: skipped"


async def test_our_own_bad_request_does_not_fall_back(client: Client, settings: Settings, tmp_path: Path) -> None:
    spec = faulty_spec(settings, tmp_path, "400", [{"content": "never"}])
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "failed"
    assert "call_model failed: ModelError" in (result.reason or "") and "BadRequestError" in (result.reason or "")
    assert model_rows(settings, result.run_id) == []


@pytest.mark.parametrize(("limits", "calls", "reason"), [
    ({"max_model_calls": 2}, 2, "budget: max_model_calls (2) reached"),
    ({"max_tokens": 1}, 1, "budget: max_tokens (1) reached with"),
    ({"max_cost": 0.000001}, 1, "budget: max_cost (1e-06) reached with"),
])
async def test_budgets_end_the_run_at_the_limit(client: Client, settings: Settings, tmp_path: Path,
                                                limits: dict[str, Any], calls: int, reason: str) -> None:
    support.seed_demo_orders(settings.db_url)
    spec = write_spec(tmp_path, [LOOKUP, LOOKUP, LOOKUP, {"content": "done"}], limits=limits,
                      model={"provider": "scripted", "script": str(tmp_path / "turns.yaml"), "price_in_per_1k": 1.0})
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "limit_reached" and (result.reason or "").startswith(reason)
    assert len(model_rows(settings, result.run_id)) == calls == result.usage["model_calls"]
    # nothing was cut mid-action: every call the model proposed went through the boundary
    assert [c.outcome for c in result.tool_calls] == ["executed"] * calls


async def test_the_daily_cost_cap_is_shared_by_a_tenants_runs(client: Client, settings: Settings,
                                                              tmp_path: Path) -> None:
    support.seed_demo_orders(settings.db_url)
    spec = write_spec(tmp_path, [LOOKUP, {"content": "done"}], limits={"daily_cost": 0.000001},
                      model={"provider": "scripted", "script": str(tmp_path / "turns.yaml"), "price_in_per_1k": 1.0})
    first = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    second = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert first.status == second.status == "limit_reached"
    assert "daily cost cap of refund-test for tenant default reached" in (second.reason or "")
    assert (first.usage["model_calls"], second.usage.get("model_calls", 0)) == (1, 0)


async def test_runs_show_prints_the_timeline(client: Client, settings: Settings, tmp_path: Path) -> None:
    support.seed_demo_orders(settings.db_url)
    spec = faulty_spec(settings, tmp_path, "429", [LOOKUP, {"content": "The lamp order is A-1001."}])
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    code, out, err = await airlock(settings, "runs", "show", result.run_id)
    assert code == 0, err
    assert "Timeline" in out and "fallback after" in out and "RateLimitError" in out
    assert "lookup_order: allow" in out and "lookup_order: succeeded" in out
    assert "model calls 2" in out and "fallbacks 2" in out
    code, out, _ = await airlock(settings, "runs", "show", result.run_id, "--json")
    data = json.loads(out)
    assert data["run"]["status"] == "completed" and data["usage"]["fallbacks"] == 2
    assert [e["kind"] for e in data["timeline"]] == ["model", "validation", "policy", "execution", "model", "run"]
    assert data["timeline"][0]["data"]["prompt_hash"] == spec.prompt_hash
    code, _, err = await airlock(settings, "runs", "show", "no-such-run")
    assert code == 1 and "no run no-such-run" in err


async def test_prompts_diff_shows_what_changed_between_versions(client: Client, settings: Settings,
                                                                tmp_path: Path) -> None:
    one = write_spec(tmp_path, [{"content": "hi"}], "v1.yaml", system_prompt="You issue refunds within policy.")
    two = write_spec(tmp_path, [{"content": "hi"}], "v2.yaml", version=2,
                     system_prompt="You issue refunds within policy.\nNever refund a gift card.",
                     tools=["tools.support:issue_refund"])
    for spec in (one, two):
        await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    code, out, err = await airlock(settings, "prompts", "diff", "refund-test", "1", "2")
    assert code == 0, err
    assert f"v1 ({one.prompt_hash[:16]}) → v2 ({two.prompt_hash[:16]})" in out
    assert "+Never refund a gift card." in out and "-# tool lookup_order" in out
    code, out, _ = await airlock(settings, "prompts", "list", "refund-test")
    assert out.count("refund-test") == 0 and "v1  " in out and "v2  " in out
    code, out, _ = await airlock(settings, "prompts", "list", "refund-test", "--json")
    assert [(v["version"], v["prompt_hash"]) for v in json.loads(out)] == [(1, one.prompt_hash), (2, two.prompt_hash)]
    code, out, _ = await airlock(settings, "prompts", "diff", "refund-test", "1", "2", "--json")
    diffed = json.loads(out)
    assert diffed["changed"] and "+Never refund a gift card." in diffed["diff"]
    code, _, err = await airlock(settings, "prompts", "diff", "refund-test", "1", "3")
    assert code == 2 and "no recorded prompt for version(s) 3" in err


async def test_stats_sum_up_runs_latency_cost_and_fallbacks(client: Client, settings: Settings,
                                                            tmp_path: Path) -> None:
    support.seed_demo_orders(settings.db_url)
    done = await run_to_end(client, settings, faulty_spec(settings, tmp_path, "500", [LOOKUP, {"content": "done"}],
                                                         "a.yaml"), {"customer_id": "cus_ana"})
    capped = await run_to_end(client, settings, write_spec(
        tmp_path, [LOOKUP, LOOKUP, {"content": "done"}], "b.yaml", limits={"max_model_calls": 1},
        model={"provider": "scripted", "script": str(tmp_path / "b.turns.yaml"), "price_in_per_1k": 1.0}),
        {"customer_id": "cus_ana"})
    assert (done.status, capped.status) == ("completed", "limit_reached")
    code, out, err = await airlock(settings, "stats", "--since", "1h", "--json")
    assert code == 0, err
    figures = json.loads(out)
    assert figures["runs"] == {"total": 2, "by_status": {"completed": 1, "limit_reached": 1}, "success_rate": 0.5}
    assert figures["model"]["calls"] == 3 and figures["model"]["fallback_rate"] == round(2 / 3, 4)
    with Session(make_engine(settings.db_url)) as session:
        rows = session.exec(select(ModelCallRow)).all()
    assert figures["model"]["cost"] == pytest.approx(sum(r.cost for r in rows))
    assert figures["model"]["cost_per_successful_run"] == pytest.approx(
        sum(r.cost for r in rows if r.run_id == done.run_id))
    assert figures["latency_ms"]["model"]["count"] == 3 and figures["latency_ms"]["policy"]["count"] == 2
    assert figures["latency_ms"]["model"]["p95"] >= figures["latency_ms"]["model"]["p50"] > 0
    assert figures["boundary"]["denial_rate"] == 0.0
    series = figures["series"]  # what the stats page plots
    assert series["unit"] == "hour" and len(series["buckets"]) in (1, 2)
    assert {s: sum(v) for s, v in series["runs_by_status"].items()} == figures["runs"]["by_status"]
    assert sum(series["cost"]) == pytest.approx(figures["model"]["cost"])
    code, out, _ = await airlock(settings, "stats", "--since", "1h")
    assert "2 run(s), 1 completed, 1 limit_reached; success rate 50.0%" in out
    assert "fallback rate 66.7%" in out
    code, _, err = await airlock(settings, "stats", "--since", "yesterday")
    assert code == 2 and "--since: use a number and a unit" in err and "'yesterday'" in err


async def test_the_input_guard_redacts_and_limits_what_reaches_the_model(client: Client, settings: Settings,
                                                                         tmp_path: Path) -> None:
    from tests.integration.test_runs import model_requests

    guard = {"max_chars": 200, "redact": "tools.guards:redact_pii"}
    spec = write_spec(tmp_path, [{"content": "ok"}], input_guard=guard)
    said = "Refund me: ana@example.com, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00."
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana", "message": said})
    assert result.status == "completed"
    [request] = await model_requests(client, result.run_id)
    assert request.messages[1]["content"] == "Refund me: [email], card [card number], IBAN [iban]."
    history = (await client.get_workflow_handle(result.run_id).fetch_history()).to_json()
    assert "4111 1111" not in json.dumps([e for e in json.loads(history)["events"]
                                          if "activityTaskScheduledEventAttributes" in e
                                          and "call_model" in json.dumps(e)])
    too_long = await run_to_end(client, settings, spec, {"customer_id": "cus_ana", "message": "x" * 201})
    assert too_long.status == "failed" and too_long.steps == 0
    assert "guard_input failed: InputError: the input is 201 characters; this workflow takes at most 200" in (
        too_long.reason or "")


async def test_invalid_arguments_are_repaired_a_limited_number_of_times(client: Client, settings: Settings,
                                                                        tmp_path: Path) -> None:
    bad = {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "nope"}}]}
    spec = write_spec(tmp_path, [bad, bad, bad, {"content": "done"}], limits={"max_repairs": 1})
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "failed" and [c.outcome for c in result.tool_calls] == ["invalid", "invalid"]
    assert result.reason == "the model's answers failed validation 2 times; 1 repair(s) allowed (limits.max_repairs)"
    repaired = await run_to_end(client, settings, write_spec(tmp_path, [bad, {"content": "done"}], "ok.yaml",
                                                             limits={"max_repairs": 1}), {"customer_id": "cus_ana"})
    assert repaired.status == "completed"


ANSWER = {"customer_id": "cus_ana", "refunded_orders": [], "message": "Your lamp order A-1001 is on its way."}


async def test_a_final_answer_that_misses_the_output_schema_is_repaired(client: Client, settings: Settings,
                                                                      tmp_path: Path) -> None:
    support.seed_demo_orders(settings.db_url)
    spec = write_spec(tmp_path, [
        {"content": json.dumps({"customer_id": "ana"}), "expect_response_format": True},
        {"content": "```json\n" + json.dumps(ANSWER) + "\n```", "expect_response_format": True},
    ], output_schema="tools.support:RefundOutcome", limits={"max_repairs": 1})
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "completed", result.reason
    assert result.structured == ANSWER
    assert [r.step_class for r in model_rows(settings, result.run_id)] == ["plan", "repair"]
    with Session(make_engine(settings.db_url)) as session:
        timeline = described(repo.run_timeline(session, run_id=result.run_id))
    checks = [e for e in timeline if e.kind == "validation"]
    assert [e.data["ok"] for e in checks] == [False, True]
    assert "customer_id: String should match pattern" in checks[0].summary
    assert "message: Field required" in checks[0].summary


async def test_a_final_answer_that_stays_invalid_fails_the_run(client: Client, settings: Settings,
                                                             tmp_path: Path) -> None:
    spec = write_spec(tmp_path, [{"content": "Sure! Everything is fine."}] * 3,
                      output_schema="tools.support:RefundOutcome", limits={"max_repairs": 1})
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "failed" and result.structured is None
    assert (result.reason or "").startswith("the final answer does not match the output schema "
                                            "(tools.support:RefundOutcome) after 1 repair(s) (limits.max_repairs): ")
    assert "Invalid JSON" in (result.reason or "")
    assert result.usage["model_calls"] == 2


async def test_a_step_class_can_be_routed_to_a_cheaper_model(client: Client, settings: Settings,
                                                           tmp_path: Path) -> None:
    support.seed_demo_orders(settings.db_url)
    cheap = tmp_path / "cheap.yaml"  # the scripted endpoint answers turn N of a script with N-1 assistant turns before
    cheap.write_text(json.dumps({"turns": [{"content": "(not used)"},
                                           {"content": "Summary by the cheap model: A-1001 is a lamp."}]}))
    spec = write_spec(tmp_path, [LOOKUP, {"content": "the primary never summarises"}],
                      model={"provider": "scripted", "script": str(tmp_path / "turns.yaml"), "price_in_per_1k": 2.0},
                      routes={"tool_results": {"provider": "scripted", "script": "cheap.yaml",
                                               "price_in_per_1k": 0.1}})
    result = await run_to_end(client, settings, spec, {"customer_id": "cus_ana"})
    assert result.status == "completed" and result.output == "Summary by the cheap model: A-1001 is a lamp."
    rows = model_rows(settings, result.run_id)
    assert [(r.step_class, r.endpoint) for r in rows] == [("plan", "scripted model (turns.yaml)"),
                                                         ("tool_results", "scripted model (cheap.yaml)")]
    assert rows[0].cost == pytest.approx(rows[0].input_tokens / 1000 * 2.0)
    assert rows[1].cost == pytest.approx(rows[1].input_tokens / 1000 * 0.1)
    code, out, _ = await airlock(settings, "runs", "show", result.run_id)
    assert code == 0 and "[tool_results]" in out
