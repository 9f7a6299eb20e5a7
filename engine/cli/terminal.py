"""Text that others wrote (a model, a policy, a chain, a person), made safe to print on a terminal."""

from __future__ import annotations

import re

from rich.markup import escape as escape_markup

# C0 and C1 controls but tab and newline (ESC sequences move the cursor, clear the screen, hide text or write
# links; a carriage return overwrites the line), and the invisible marks that reorder or hide text (bidi controls,
# zero-width characters).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def escape(text: str) -> str:
    """``text`` as written: each control character shown as its escape (``\\x1b``, ``\\u202e``), Rich markup
    escaped (``[conceal]`` shows as itself)."""
    return escape_markup(_CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text))
