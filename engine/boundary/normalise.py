"""How one scalar is compared, and how tokens of a kind are found in text, for ``provenance``.

Exactness is the point: a look-alike (same ends, different middle), a prefix, or a value
inside a longer token must never count as the same value, because an attacker who plants
text in a tool result wants the model's made-up value to look as if it came from somewhere.
Every token pattern therefore refuses to start or stop in the middle of a longer token.
Pure: no I/O.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

#: Longer strings are compared only as text: anchored patterns over huge values waste time.
MAX_CLASSIFIED = 2048
#: Text values shorter than this are matched only as whole scalar fields.
MIN_SCANNED = 3
#: Decimals shorter than this (by canonical value: one digit) are matched only as whole scalar fields. Two digits
#: are enough: small amounts are what an injection asks for ("refund 45 EUR") and must not pass as made up.
MIN_SCANNED_DECIMAL = 2

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_IBAN = re.compile(r"[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\.?")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|0|[1-9][0-9]*)(?:\.[0-9]+)?")
# A decimal comma ("49,99 €"): one or two digits after it, so never a thousands group.
_DECIMAL_COMMA = re.compile(r"[+-]?(?:0|[1-9][0-9]*),[0-9]{1,2}")

# In text, tokens start and stop only where a longer token could not continue.
_TOKENS = {
    "address": re.compile(r"(?<![\w\-])0x[0-9a-fA-F]{40}(?![\w\-])"),
    "iban": re.compile(r"(?<![\w\-])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![\w\-])"),
    "email": re.compile(
        r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+(?![\w\-@]|\.[A-Za-z0-9])"
    ),
    "url": re.compile(r"(?<![\w.+\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"'`\[\](){}]+"),
    "host": re.compile(
        r"(?<![\w.\-@/:])(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
        r"(?![\w\-@]|\.[A-Za-z0-9])"
    ),
    "decimal": re.compile(
        r"(?<![\w.,+\-])[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+,[0-9]{1,2}|[0-9]+(?:\.[0-9]+)?)"
        r"(?![\w\-]|[.,][0-9])"
    ),
}


def _decimal(text: str) -> str | None:
    """The canonical value of a decimal (``10``, ``10.0`` and ``10.00`` alike), or None."""
    if _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    elif not _DECIMAL.fullmatch(text):
        return None
    try:
        number = Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None
    return "0" if number == 0 else format(number.normalize(), "f")


def _url(text: str) -> tuple[str, str] | None:
    """The canonical URL (scheme and host lower-cased, a bare ``/`` path dropped) and its host."""
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    path = "" if parts.path == "/" else parts.path
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}{query}{fragment}", host.rstrip(".")


def _iban_valid(compact: str) -> bool:
    """The ISO 13616 check (mod 97), used only to choose where a spaced IBAN in text ends."""
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def normalise(value: Any) -> list[tuple[str, str]]:
    """The ``(kind, text)`` forms a scalar is compared as; equal forms mean the same value.

    Kinds, tried in order: ``address`` (0x + 40 hex, lower-cased), ``iban`` (upper-cased,
    spaces removed), ``email`` (lower-cased), ``url`` (scheme and host lower-cased, a bare
    ``/`` path dropped; also yields ``host``), ``host`` (lower-cased), ``decimal`` (by value),
    else ``text`` (NFKC, trimmed, case kept). The first form is the value's own kind.
    Booleans, None, containers and non-finite floats have no form.
    """
    if isinstance(value, bool) or value is None or isinstance(value, dict | list | tuple):
        return []
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return []
        number = _decimal(format(Decimal(repr(value)), "f"))
        return [("decimal", number)] if number else []
    text = unicodedata.normalize("NFKC", str(value)).strip()
    if len(text) > MAX_CLASSIFIED:
        return [("text", text)]
    if _ADDRESS.fullmatch(text):
        return [("address", text.lower())]
    if _IBAN.fullmatch(text):
        return [("iban", text.replace(" ", "").upper())]
    if _EMAIL.fullmatch(text):
        return [("email", text.lower())]
    if _URL.fullmatch(text) and (url := _url(text)):
        return [("url", url[0]), ("host", url[1])]
    if _HOST.fullmatch(text):
        return [("host", text.lower().rstrip("."))]
    number = _decimal(text)
    return [("decimal", number)] if number else [("text", text)]


def scannable(kind: str, text: str) -> bool:
    """Whether a value may be looked for inside longer text: short generic values are noise."""
    if kind == "decimal":
        return len(text.lstrip("+-")) >= MIN_SCANNED_DECIMAL
    return kind != "text" or len(text) >= MIN_SCANNED


def _boundary(text: str, index: int) -> bool:
    """Whether ``index`` is outside ``text`` or on a character that cannot continue a token."""
    return not 0 <= index < len(text) or not (text[index].isalnum() or text[index] in "_-")


def tokens(text: str, kind: str, needle: str) -> Iterator[tuple[int, int]]:
    """Spans in ``text`` (already NFKC) whose value of ``kind`` equals ``needle``, in order."""
    if kind == "text":
        start = text.find(needle)
        while start >= 0 and needle:
            end = start + len(needle)
            if _boundary(text, start - 1) and _boundary(text, end):
                yield start, end
            start = text.find(needle, start + 1)
        return
    if kind == "host":
        yield from _host_tokens(text, needle)
        return
    pos = 0
    while match := _TOKENS[kind].search(text, pos):
        start, end, found = match.start(), match.end(), match.group()
        if kind == "iban":
            end, found = _iban_end(start, found)
        elif kind == "url":
            found = found.rstrip(".,;:!?")
            end = start + len(found)
        if (normalise(found)[:1] or [("", "")])[0] == (kind, needle):
            yield start, end
        pos = max(end, start + 1)


def _iban_end(start: int, found: str) -> tuple[int, str]:
    """Where a spaced IBAN ends: the longest prefix at a space that passes the check, else all."""
    cuts = [len(found)] + [i for i in range(len(found) - 1, 0, -1) if found[i] == " "]
    for cut in cuts:
        compact = found[:cut].replace(" ", "")
        if len(compact) >= 15 and _iban_valid(compact):
            return start + cut, found[:cut]
    return start + len(found), found


def _host_tokens(text: str, needle: str) -> Iterator[tuple[int, int]]:
    """Hosts written bare and hosts of URLs, in order of position."""
    spans = [(m.start(), m.end()) for m in _TOKENS["host"].finditer(text) if m.group().lower() == needle]
    for match in _TOKENS["url"].finditer(text):
        url = _url(match.group().rstrip(".,;:!?"))
        if url and url[1] == needle:
            spans.append((match.start(), match.end()))
    yield from sorted(spans)
