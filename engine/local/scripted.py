"""The scripted model: an OpenAI-compatible endpoint that replays recorded turns.

It is a real HTTP server, so tests and the demo use the same ``openai`` code
path as production. Under ``/fault/<kind>/v1`` it misbehaves on purpose, for
fault tests of the model layer: ``429``, ``500``, ``400`` answer that status,
``timeout`` answers after 30 s, ``malformed`` answers 200 with a body that is
not JSON. The request's ``model`` names the script file (an
absolute path ending in ``.yaml``); the turn answered is the number of
assistant messages already in the conversation, so concurrent runs never
share a cursor. A script::

    turns:
      - tool_calls: [{name: lookup_order, args: {order_id: A-1001}}]
        content: "Looking the order up first."     # optional stated reason
      - content: "All done."
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

LABEL = "scripted model"


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = None  # sent as is instead of ``args``: what a misbehaving model would send


class ScriptedTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str | None = None
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    expect_response_format: bool = False  # answer 400 unless the request asks for a JSON-schema answer


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turns: list[ScriptedTurn]


def load_script(path: str) -> Script:
    """Read and validate a script file."""
    file = Path(path)
    if file.suffix not in (".yaml", ".yml") or not file.is_absolute():
        raise ValueError(f"model must name a script by absolute .yaml path, got {path!r}")
    return Script.model_validate(yaml.safe_load(file.read_text()))


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def create_app() -> FastAPI:
    """The FastAPI app serving ``/v1/chat/completions``."""
    app = FastAPI(title="Airlock scripted model", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": LABEL}

    @app.post("/fault/{kind}/v1/chat/completions")
    async def fault(kind: str) -> Response:
        if kind == "timeout":
            await asyncio.sleep(30)
        if kind == "malformed":
            return Response("{\"choices\": [unterminated", media_type="application/json")
        status = int(kind) if kind.isdigit() else 500
        return JSONResponse({"error": {"message": f"{LABEL}: fault {kind} on purpose", "type": "fault"}},
                            status_code=status)

    @app.post("/v1/chat/completions")
    def complete(body: dict[str, Any]) -> dict[str, Any]:
        try:
            script = load_script(str(body.get("model", "")))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise HTTPException(status_code=400, detail=f"{LABEL}: {exc}") from exc
        messages = body.get("messages") or []
        turn_no = sum(1 for m in messages if m.get("role") == "assistant")
        if turn_no < len(script.turns):
            turn = script.turns[turn_no]
        else:
            turn = ScriptedTurn(content=f"({LABEL}: the script has no turn {turn_no + 1})")
        wanted = body.get("response_format") or {}
        if turn.expect_response_format and not (wanted.get("type") == "json_schema" and
                                                isinstance(wanted.get("json_schema", {}).get("schema"), dict)):
            raise HTTPException(status_code=400, detail=f"{LABEL}: turn {turn_no + 1} expects a json_schema "
                                                        f"response_format, got {wanted or 'none'}")
        message: dict[str, Any] = {"role": "assistant", "content": turn.content}
        if turn.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{turn_no + 1}_{i}", "type": "function",
                 "function": {"name": c.name,
                              "arguments": c.raw_arguments if c.raw_arguments is not None else json.dumps(c.args)}}
                for i, c in enumerate(turn.tool_calls)
            ]
        prompt = json.dumps(messages)
        return {
            "id": f"scripted-{turn_no + 1}", "object": "chat.completion", "created": int(time.time()),
            "model": f"{LABEL}: {Path(str(body['model'])).name}",
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if turn.tool_calls else "stop"}],
            "usage": {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(json.dumps(message)),
                      "total_tokens": _tokens(prompt) + _tokens(json.dumps(message))},
        }

    return app
