"""The scripted model speaks the OpenAI chat-completions shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.errors import SpecError
from engine.local.scripted import create_app
from engine.spec.script import dump_script, load_script


def _script(tmp_path: Path) -> str:
    path = tmp_path / "t.yaml"
    path.write_text("turns:\n  - content: thinking\n    tool_calls: [{name: f, args: {a: 1}}]\n  - content: done\n")
    return str(path)


def test_turn_follows_assistant_message_count(tmp_path: Path) -> None:
    client, model = TestClient(create_app()), _script(tmp_path)
    first = client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user"}]}).json()
    call = first["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "f", "arguments": json.dumps({"a": 1})}
    assert first["model"] == "scripted model: t.yaml"
    second = client.post("/v1/chat/completions", json={"model": model, "messages": [
        {"role": "user"}, {"role": "assistant"}, {"role": "tool"}]}).json()
    assert second["choices"][0]["message"]["content"] == "done"
    third = client.post("/v1/chat/completions", json={"model": model, "messages": [
        {"role": "assistant"}, {"role": "assistant"}]}).json()
    assert "script has no turn 3" in third["choices"][0]["message"]["content"]


def test_bad_script_is_a_400(tmp_path: Path) -> None:
    client = TestClient(create_app())
    response = client.post("/v1/chat/completions", json={"model": "relative.yaml", "messages": []})
    assert response.status_code == 400 and "absolute .yaml path" in response.json()["detail"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("turns:\n  - colour: red\n")
    assert client.post("/v1/chat/completions", json={"model": str(bad), "messages": []}).status_code == 400


CASES = """\
cases:
  - match: "A-1001"
    turns:
      - tool_calls: [{name: lookup_order, args: {order_id: A-1001}}]
      - content: lamp refunded
  - match: '"case": "chair"'
    turns:
      - content: chair case
"""


def _ask(client: TestClient, model: str, message: object, answered: int = 0) -> dict[str, object]:
    messages = [{"role": "system", "content": "be careful"}, {"role": "user", "content": message}]
    messages += [{"role": "assistant", "content": "x"}, {"role": "tool", "content": "y"}] * answered
    response = client.post("/v1/chat/completions", json={"model": model, "messages": messages})
    assert response.status_code == 200, response.text
    message_out = response.json()["choices"][0]["message"]
    assert isinstance(message_out, dict)
    return message_out


def test_each_run_gets_the_case_its_first_message_matches(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(CASES + "turns:\n  - content: nothing matched\n")
    client, model = TestClient(create_app()), str(path)
    lamp = _ask(client, model, "my lamp from order A-1001 broke")
    assert lamp["tool_calls"][0]["function"]["name"] == "lookup_order"  # type: ignore[index]
    assert _ask(client, model, "my lamp from order A-1001 broke", answered=1)["content"] == "lamp refunded"
    # the whole input as JSON when it has no message: a case id in the input picks the case
    assert _ask(client, model, json.dumps({"case": "chair", "customer_id": "cus_ana"}))["content"] == "chair case"
    # content parts are matched too
    assert _ask(client, model, [{"type": "text", "text": "about A-1001"}])["tool_calls"]
    assert _ask(client, model, "something else")["content"] == "nothing matched"


def test_no_matching_case_and_no_default_turns_is_a_400_naming_the_message(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(CASES)
    client = TestClient(create_app())
    response = client.post("/v1/chat/completions", json={"model": str(path), "messages": [
        {"role": "user", "content": "where is my parcel"}]})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "no case of cases.yaml matches the run's message 'where is my parcel'" in detail
    assert "'A-1001'" in detail


@pytest.mark.parametrize(("text", "expected"), [
    ("cases:\n  - match: '(unclosed'\n    turns: []\n", ":2: cases[0].match: not a regular expression"),
    ("cases: []\n", ":1: (document): a script needs 'turns' or 'cases'"),
    ("turns:\n  - content: ok\n  - colour: red\n", ":3: turns[1].colour: unknown key"),
    ("- content: a list\n", ":1: (document): a script must be a mapping"),
])
def test_script_problems_are_located_in_the_script_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_script(path)
    assert any(str(i).startswith(f"{path}{expected}") for i in info.value.issues), info.value.issues


def test_a_written_script_reads_back_even_with_a_turn_used_twice(tmp_path: Path) -> None:
    turn = {"tool_calls": [{"name": "f", "args": {"a": 1}}]}
    path = tmp_path / "s.yaml"
    path.write_text(dump_script({"turns": [turn, turn, {"content": "done"}]}))
    assert "&" not in path.read_text() and "*" not in path.read_text()  # no anchors, no aliases
    assert [t.tool_calls[0].args if t.tool_calls else t.content for t in load_script(path).turns or []] == [
        {"a": 1}, {"a": 1}, "done"]
