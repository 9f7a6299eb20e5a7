"""Property-based attacks (hypothesis) on every door hostile text comes through.

Specs, ``--input`` and tool arguments get either a clean result or a located
error (exit 2 from the CLI); never a traceback, never a started run, in bounded
time and memory. The API's bodies are fuzzed against the real server in
``tests/integration/test_fuzz_api.py``.

Each property runs ``FUZZ_EXAMPLES`` examples (60 by default, so CI stays
fast); set ``AIRLOCK_FUZZ_EXAMPLES=2000`` for a long local hunt.
"""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine.boundary.arguments import check_arguments
from engine.boundary.inputs import MAX_ARGUMENT_BYTES, MAX_DEPTH, MAX_INPUT_BYTES, parse_object
from engine.cli import app
from engine.errors import InputError, SpecError
from engine.spec import ResolvedSpec, add_import_roots, load_spec
from engine.toolkit import DECIMAL_TEXT, resolve_tool
from tests.helpers import ROOT

FUZZ_EXAMPLES = int(os.environ.get("AIRLOCK_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=5000, derandomize=not os.environ.get("AIRLOCK_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
MEMORY_BOUND = 64 * 1024 * 1024
runner = CliRunner()
ENV = {"AIRLOCK_PROJECT_DIR": str(ROOT), "AIRLOCK_TEMPORAL__ADDRESS": "127.0.0.1:1"}

# --- what attackers send -------------------------------------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "\u0663", "\uff11\uff12", "1e999", "-0", "NaN", "Infinity", "9" * 400,
                            "../../etc/passwd", "/etc/passwd", "os:system", "builtins:eval", "tools.support:Session",
                            "\x00", "\u202e", "a" * 5000, "999999999d", "99999999999d", "1e300", "0x" + "f" * 64,
                            "{{7*7}}", "<script>", "'; DROP TABLE runs; --", "\ud7ff", "[" * 50,
                            "\ud800", "x\udcff", "\udfff\ud800"])  # lone surrogates: not encodable text
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), ODD_TEXT)
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                       max_leaves=20)


def deep(levels: int, opener: str = "[") -> str:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return '{"a":' * levels + "1" + closer * levels
    return opener * levels + closer * levels


DEEP_TEXT = st.builds(deep, st.integers(min_value=MAX_DEPTH - 2, max_value=200_000), st.sampled_from(["[", "{"]))


def as_json_text(value: Any) -> str:
    return json.dumps(value)  # NaN and Infinity come out as the bare words a hostile client would send


INPUT_TEXT = st.one_of(st.builds(as_json_text, JSONISH), DEEP_TEXT, st.text(max_size=200),
                       st.builds(lambda n: json.dumps({"blob": "x" * n}), st.integers(0, 2 * MAX_INPUT_BYTES)))


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class Bounded:
    """Peak Python allocation of a block (the memory bound of one example)."""

    def __enter__(self) -> Bounded:
        tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _, self.peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert self.peak < MEMORY_BOUND, f"used {self.peak} bytes"


# --- run input ------------------------------------------------------------------------------

@FUZZ
@given(raw=INPUT_TEXT)
@example(raw=deep(100_000))  # a segmentation fault once
@example(raw=json.dumps({"blob": "x" * 3_000_000}))
@example(raw='{"amount": NaN, "limit": Infinity}')
@example(raw='{"message": "\\ud800"}')
@example(raw='{"n": ' + "9" * 5000 + "}")  # more digits than Python reads as an int
def test_any_input_is_a_bounded_object_or_a_located_refusal(raw: str) -> None:
    with Bounded():
        try:
            value = parse_object(raw, "--input")
        except InputError as exc:
            assert str(exc).startswith("--input"), exc
            return
    assert isinstance(value, dict) and _depth(value) <= MAX_DEPTH
    assert len(json.dumps(value, allow_nan=False).encode()) <= MAX_INPUT_BYTES  # NaN would raise here


@FUZZ
@given(raw=st.one_of(st.builds(as_json_text, JSONISH), DEEP_TEXT, ODD_TEXT))
def test_the_cli_refuses_bad_input_with_exit_2_before_it_connects(raw: str) -> None:
    result = runner.invoke(app, ["run", "support_refund", "--as", "alice", "--input", raw], env=ENV)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    try:
        parse_object(raw, "--input")
    except InputError as exc:
        assert result.exit_code == 2 and str(exc)[:60] in " ".join(result.output.split()), result.output
        return
    # A good input gets as far as the password, still before anything reaches Temporal.
    assert result.exit_code == 2 and "--password-stdin" in result.output, result.output


# --- specs ----------------------------------------------------------------------------------

GOOD_SPEC: dict[str, Any] = {
    "name": "fuzzed", "version": 1, "system_prompt": "You issue refunds within policy.",
    "model": {"provider": "scripted", "script": "turns.yaml", "timeout_s": 30},
    "tools": ["tools.support:lookup_order", "tools.support:issue_refund"], "policy": "airlock.support_refund",
    "limits": {"max_steps": 5, "max_tool_calls": 3}, "approval": {"timeout": "1h", "approver_role": "leads"},
}
SPEC_PATHS = st.sampled_from([("name",), ("version",), ("system_prompt",), ("system_prompt_file",), ("tools",),
                              ("policy",), ("graph",), ("chain_id",), ("output_schema",), ("model", "script"),
                              ("model", "provider"), ("model", "timeout_s"), ("model", "max_tokens"),
                              ("model", "fallbacks"), ("model", "temperature"), ("limits", "max_steps"),
                              ("limits", "max_cost"), ("limits", "daily_cost"), ("approval", "timeout"),
                              ("approval", "approver_role"), ("input_guard",), ("routes",), ("unknown_key",)])


def mutated(changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    body = json.loads(json.dumps(GOOD_SPEC))
    for path, value in changes:
        node = body
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        node[path[-1]] = value
    return body


def spec_text(body: dict[str, Any]) -> str:
    return yaml.safe_dump(body, allow_unicode=True)


ALIASES = st.builds(lambda n: "a: &a [x, x]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i-1}'}] \n"
                                                          for i in range(n)), st.integers(1, 30))
SPEC_TEXT = st.one_of(
    st.builds(spec_text, st.builds(mutated, st.lists(st.tuples(SPEC_PATHS, JSONISH), min_size=1, max_size=4))),
    st.builds(lambda s, extra: s + extra, st.builds(spec_text, st.just(GOOD_SPEC)),
              st.sampled_from(["name: twice\n", "\n: :\n", "\t- x\n", "!!python/object:os.system {}\n",
                               "x: !!binary AA\n"])),
    ALIASES, st.text(max_size=300), st.binary(max_size=300),
    st.builds(lambda n: "name: " + "x" * n + "\n", st.integers(0, 600_000)),
)


@FUZZ
@given(text=SPEC_TEXT)
@example(text=spec_text(mutated([(("graph",), "os:getcwd")])))  # the reported ones, always tried
@example(text=spec_text(mutated([(("approval", "timeout"), "999999999d")])))
@example(text=spec_text(mutated([(("limits", "max_steps"), 1e29)])))
@example(text=spec_text(mutated([(("model", "timeout_s"), 1e300)])))
@example(text=spec_text(mutated([(("system_prompt_file",), "/etc/passwd")])))
@example(text=spec_text(mutated([(("model", "script"), "../../../etc/passwd")])))
@example(text=spec_text(GOOD_SPEC) + "name: twice\n")
@example(text="a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i-1}'}, "
                                                            f"*{'a' if i == 0 else f'b{i-1}'}]\n" for i in range(12)))
@example(text=b"name: caf\xe9\n")
@example(text=spec_text(GOOD_SPEC) + "? [a, b]\n: 1\n")  # a key that is a list
@example(text=spec_text(GOOD_SPEC) + "extra: " + "9" * 5000 + "\n")
@example(text=spec_text(GOOD_SPEC) + "extra: " + "[" * 1200 + "]" * 1200 + "\n")
@example(text=spec_text(mutated([(("model", "base_url"), "localhost:8000/v1"), (("model", "api_key_env"), "A B")])))
@example(text="name: " + "x" * 5_000_000 + "\n")
def test_any_spec_loads_or_every_problem_is_located(tmp_path: Path, text: str | bytes) -> None:
    (tmp_path / "turns.yaml").write_text("turns:\n  - content: hi\n")
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass"))
    with Bounded():
        try:
            spec = load_spec(path, project_dir=ROOT)
        except SpecError as exc:
            assert exc.issues and all(re.match(rf"{re.escape(str(path))}(:\d+)?: ", str(i)) for i in exc.issues), \
                exc.issues
            problems = exc.issues
        else:
            assert isinstance(spec, ResolvedSpec)
            problems = []
    result = runner.invoke(app, ["validate", str(path)], env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == (2 if problems else 0), result.output
    assert "Traceback" not in result.output


# --- tool arguments -------------------------------------------------------------------------

add_import_roots(ROOT)
ACME, TOKEN = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "0x5FbDB2315678afecb367f032d93F642f64180aa3"
HONEST = {  # valid arguments of each shipped tool; the fuzzer replaces some of them
    "tools.support:lookup_order": {"order_id": "A-1001"},
    "tools.support:issue_refund": {"order_id": "A-1001", "amount": "12.50", "reason": "lamp arrived broken"},
    "tools.treasury:transfer_token": {"chain_id": 31337, "token": TOKEN, "to": ACME, "amount": "250", "memo": "INV-1"},
    "tools.treasury:transfer_native": {"chain_id": 31337, "to": ACME, "amount": "0.5", "memo": "gas"},
    "tools.treasury:approve_token": {"chain_id": 31337, "token": TOKEN, "spender": ACME, "amount": "unlimited"},
    "tools.treasury:get_balance": {"address": ACME, "token": TOKEN},
}
TOOLS = {path: resolve_tool(path) for path in HONEST}
HOSTILE_VALUES = st.one_of(st.sampled_from([
    "\u0663", "\u0661\u0662.5", "\uff11", "1.00000000000000000000000000001", "1e3", " 1", "1,5", "-1", "0x10",
    12.5, 10**40, -1, 2**64, "31337", 31337.0, "unlimited", ACME.lower(), ACME.upper(), ACME[:-1] + "c", "A-1001\n",
    "A-1001 ", "x" * 70_000]), JSONISH)


@st.composite
def argument_text(draw: st.DrawFn, tool: str) -> str:
    """A tool's honest arguments with some fields replaced, removed or added, as JSON text."""
    args = dict(HONEST[tool])
    for name in draw(st.lists(st.sampled_from([*args, "extra"]), min_size=1, max_size=2)):
        if draw(st.integers(0, 4)) == 0 and name != "extra":
            args.pop(name, None)
        else:
            args[name] = draw(HOSTILE_VALUES)
    return as_json_text(args)


ARGUMENT_TEXT = st.sampled_from(sorted(HONEST)).flatmap(lambda tool: st.tuples(st.just(tool), st.one_of(
    argument_text(tool), argument_text(tool), argument_text(tool), st.builds(as_json_text, JSONISH), DEEP_TEXT,
    st.text(max_size=100),
    st.builds(lambda n: json.dumps({"reason": "x" * n}), st.integers(MAX_ARGUMENT_BYTES - 100, 4 * MAX_ARGUMENT_BYTES)),
)))


def test_the_honest_arguments_pass() -> None:
    for path, args in HONEST.items():
        assert check_arguments(TOOLS[path].args_model, json.dumps(args)).ok, path


def _honest_but(tool: str, **changes: Any) -> tuple[str, str]:
    return tool, json.dumps({**HONEST[tool], **changes})


@settings(FUZZ, max_examples=4 * FUZZ_EXAMPLES)  # cheap: no I/O
@given(case=ARGUMENT_TEXT)
@example(case=_honest_but("tools.treasury:transfer_token", amount="\u0663"))  # the known attacks, always tried
@example(case=_honest_but("tools.support:issue_refund", amount="\uff11\uff12.50"))
@example(case=_honest_but("tools.treasury:transfer_native", amount=2.5))
@example(case=_honest_but("tools.treasury:transfer_token", chain_id=2**64))
def test_any_tool_arguments_are_valid_and_bounded_or_refused_with_the_field(case: tuple[str, str]) -> None:
    tool, raw = case
    with Bounded():
        result = check_arguments(TOOLS[tool].args_model, raw)
    if not result.ok:
        assert result.error and len(result.error) < 20_000, result
        return
    assert json.dumps(result.args, allow_nan=False) and _depth(result.args) <= MAX_DEPTH
    assert len(json.dumps(result.args).encode()) <= MAX_ARGUMENT_BYTES
    amount = result.args.get("amount")
    if amount is not None and amount != "unlimited":
        assert isinstance(amount, str) and re.fullmatch(DECIMAL_TEXT, amount, flags=re.ASCII), amount
    if "chain_id" in result.args:
        assert 1 <= result.args["chain_id"] < 2**63
    for field in ("to", "token", "spender", "address"):
        if result.args.get(field) is not None:
            assert re.fullmatch(r"0x[0-9a-fA-F]{40}", result.args[field]), result.args


@pytest.mark.parametrize("raw, problem", [
    ('{"order_id": "A-1001", "amount": "\u0663", "reason": "lamp"}', "amount: Value error, must be a decimal string"),
    ('{"order_id": "A-1001", "amount": 12.5, "reason": "lamp"}', "amount: Value error, must be a decimal string"),
    ('{"order_id": "A-1001", "amount": NaN, "reason": "lamp"}', "arguments: NaN is not a JSON number"),
    (deep(40), "arguments: nested deeper than 32 levels"),
])
def test_the_argument_check_names_what_is_wrong(raw: str, problem: str) -> None:
    result = check_arguments(resolve_tool("tools.support:issue_refund").args_model, raw)
    assert not result.ok and result.error and result.error.startswith(problem), result.error
