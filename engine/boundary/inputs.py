"""Limits on documents that enter a run from outside: one rule for every door.

A run input (``--input``, API bodies) is a JSON object of at most
``MAX_INPUT_BYTES`` when serialised, nested at most ``MAX_DEPTH`` deep, with
finite numbers only (``NaN`` and ``Infinity`` are not JSON and would be stored
as ``null``). Tool arguments proposed by the model obey the same rules with
``MAX_ARGUMENT_BYTES``.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from engine.errors import InputError

MAX_INPUT_BYTES = 256 * 1024
MAX_ARGUMENT_BYTES = 64 * 1024
MAX_DEPTH = 32


def _utf8(text: str, where: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (from ``\\ud800`` in JSON, or bytes that were not UTF-8) has none."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{where}: not valid Unicode text at character {exc.start} (a lone surrogate, or bytes "
                         "that are not UTF-8)") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_object(raw: str, where: str, limit: int = MAX_INPUT_BYTES) -> dict[str, Any]:
    """A JSON object from text, within the limits (``limit`` bytes).

    Raises:
        InputError: naming ``where`` (and line and column for syntax errors) and what is wrong.
    """
    size = len(_utf8(raw, where))
    if size > limit:
        raise InputError(f"{where}: {size} bytes; at most {limit} are accepted")
    if text_depth(raw) > MAX_DEPTH:  # before parsing: the C parser crashes on very deep text
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from exc
    except RecursionError:
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: must be a JSON object, got {type(value).__name__}")
    check_document(value, where, limit)
    return value


def hidden_characters(text: str) -> list[str]:
    """The control and invisible formatting characters in ``text`` (NUL, ESC, bidi overrides, zero-width marks),
    as escapes: none belongs in a line a person typed, and PostgreSQL refuses to store NUL."""
    return sorted({c.encode("unicode_escape").decode("ascii") for c in text
                   if unicodedata.category(c) in ("Cc", "Cf")})


def one_line(text: str, limit: int) -> str:
    """``text`` on one line, for a record: whitespace collapsed, control and formatting characters as ``?``
    (what another party worded), cut at ``limit`` characters."""
    return " ".join("".join("?" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text).split())[:limit]


def utf8_json(body: bytes) -> bool:
    """Whether a JSON body is in UTF-8 (with or without a BOM), as JSON exchanged between systems must be
    (RFC 8259). ``json.loads`` also reads UTF-16 and UTF-32: text checked as UTF-8 would not be the text it
    parses."""
    return json.detect_encoding(body) in ("utf-8", "utf-8-sig")


def text_depth(raw: str) -> int:
    """The deepest nesting of brackets in JSON text, outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_document(value: Any, where: str, limit: int = MAX_INPUT_BYTES) -> None:
    """Refuse a document nested deeper than ``MAX_DEPTH``, larger than ``limit`` bytes or with non-finite numbers.

    Raises:
        InputError: naming ``where`` and the limit.
    """
    stack = [(value, 1)]
    while stack:  # iterative: a deep document must not exhaust the interpreter's stack here either
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None
    size = len(_utf8(text, where))
    if size > limit:
        raise InputError(f"{where}: {size} bytes; at most {limit} are accepted")
