"""The scripted model speaks the OpenAI chat-completions shape."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from engine.local.scripted import create_app


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
