"""What of an endpoint's URL, or of text that may hold one, may be stored or shown.

An RPC node's URL and a model endpoint's ``base_url`` often carry a provider's
API key: as a path segment (``/v3/<key>``), in the query (``?apikey=``), or as
userinfo (``https://user:password@host``). Libraries put the URL, or its path
and query, into their error messages. Each adapter (``engine.adapters.chain``,
``engine.adapters.llm``) passes what it translates through :func:`redact_text` with its
own URLs and secrets, so reasons, SQL rows, Temporal history, the UI, the
model's messages and logs only ever see :func:`safe_url`'s form; trace spans use
:func:`safe_url` too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

REDACTED = "REDACTED"
# A key, not a word: 12+ characters with a digit, or 24+ of anything a key is written with.
_TOKEN_LIKE = re.compile(r"^(?:(?=.*\d)[A-Za-z0-9_.+=%~-]{12,}|[A-Za-z0-9_+=%~-]{24,})$")
_PIECES = re.compile(r"[/?&=;:@#,\s]+")
_SECRET_NAME = r"[\w.-]*(?:key|token|secret|pass|auth|sig|credential|session|jwt)[\w.-]*"
_SECRET_PARAM = re.compile(rf"([?&;]{_SECRET_NAME}=)[^&#\s'\"<>()\\]+", re.IGNORECASE)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#'\"<>]+@")
_MIN_FRAGMENT = 8  # shorter parts of a configured URL are only replaced where they appear in a URL


def safe_url(url: str) -> str:
    """``scheme://host:port/path`` without userinfo, query, fragment or key-like path segments.

    Idempotent; a URL that cannot be parsed is shown as ``REDACTED``.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    else:  # a key as the first label (https://<key>.rpc.example.com)
        host = ".".join(REDACTED if i == 0 and _TOKEN_LIKE.match(label) else label
                        for i, label in enumerate(host.split(".")))
    if port:
        host += f":{port}"
    segments = (s.split(";")[0] for s in parts.path.split("/"))  # no ;params (/v3;apikey=...)
    path = "/".join(REDACTED if _TOKEN_LIKE.match(s) else s for s in segments)
    return f"{parts.scheme}://{host}{path}" if parts.scheme else path


def _fragments(url: str) -> list[str]:
    """The parts of a configured URL that may be a secret: key-like segments, query values, userinfo."""
    try:
        parts = urlsplit(url)
        username, password = parts.username or "", parts.password or ""
        query = parse_qsl(f"{parts.query}&{parts.fragment}&" + "&".join(
            p for s in parts.path.split("/") for p in s.split(";")[1:]))  # query, fragment and ;params
    except ValueError:  # not a URL Python reads: every key-like piece of it is a secret
        return [p for p in _PIECES.split(url) if _TOKEN_LIKE.match(p) and len(p) >= _MIN_FRAGMENT]
    pieces = [username, *(s.split(";")[0] for s in parts.path.split("/")), (parts.hostname or "").split(".")[0]]
    found = [password, *(s for s in pieces if _TOKEN_LIKE.match(s)), *(p for p in _PIECES.split(parts.fragment)
                                                                         if _TOKEN_LIKE.match(p))]
    found += [value for name, value in query
              if re.fullmatch(_SECRET_NAME, name, re.IGNORECASE) or _TOKEN_LIKE.match(value)]
    return [f for f in found if len(f) >= _MIN_FRAGMENT]


def redact_text(text: str, *urls: str | None, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each of ``urls`` shown as :func:`safe_url` shows it, and no secret left in it.

    Removed: every configured URL (in full, or its key-like path segments, query values and userinfo
    wherever they appear, as when a library prints only the path and query), every value of
    ``secrets`` (an API key), and in any URL at all the userinfo and the values of key-, token-,
    secret- or password-like query parameters.
    """
    for url in sorted(filter(None, urls), key=len, reverse=True):
        text = text.replace(url, safe_url(url))
    values = {f for url in urls if url for f in _fragments(url)}
    values |= {s for s in secrets if s and len(s) >= 6}
    for value in sorted(values | {quote(v, safe="") for v in values} | {unquote(v) for v in values},
                        key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _USERINFO.sub(rf"\g<1>{REDACTED}@", text)
    return _SECRET_PARAM.sub(rf"\g<1>{REDACTED}", text)
