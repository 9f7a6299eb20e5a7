"""Input guards: redaction hooks a workflow names in ``input_guard.redact``.

A hook takes the user's message and returns what the model may see. It runs
in an activity before the first model call; the original input stays in the
run's record, the model only ever gets the redacted text.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")


def redact_pii(text: str) -> str:
    """Replace e-mail addresses, payment card numbers and IBANs with placeholders."""
    text = _EMAIL.sub("[email]", text)
    text = _IBAN.sub("[iban]", text)
    return _CARD.sub("[card number]", text)
