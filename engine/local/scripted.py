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

or ``cases:``, each with a ``match`` searched in the run's first user message
and its own turns (:mod:`engine.spec.script`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response

from engine.errors import SpecError
from engine.spec.script import Script, ScriptedTurn
from engine.spec.script import load_script as read_script

LABEL = "scripted model"


def load_script(path: str) -> Script:
    """Read and validate the script a request's ``model`` names.

    Raises:
        ValueError: not an absolute path to a ``.yaml`` file.
        SpecError: the file is not a valid script.
    """
    file = Path(path)
    if file.suffix not in (".yaml", ".yml") or not file.is_absolute():
        raise ValueError(f"model must name a script by absolute .yaml path, got {path!r}")
    return read_script(file)


def first_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the conversation's first user message (what a script's cases match), else ""."""
    for m in messages:
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else ""
    return ""


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
        except (OSError, ValueError, SpecError) as exc:
            raise HTTPException(status_code=400, detail=f"{LABEL}: {exc}") from exc
        messages = body.get("messages") or []
        first = first_user_text(messages)
        turns = script.turns_for(first)
        if turns is None:
            cases = ", ".join(repr(c.match) for c in script.cases)
            raise HTTPException(status_code=400, detail=f"{LABEL}: no case of {Path(str(body['model'])).name} "
                                                        f"matches the run's message {first[:200]!r} (cases: {cases})")
        turn_no = sum(1 for m in messages if m.get("role") == "assistant")
        if turn_no < len(turns):
            turn = turns[turn_no]
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
