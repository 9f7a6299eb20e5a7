"""Where each argument of a proposed call came from, computed before the policy decides.

A run has labelled sources: the user's request (``user``, trusted), workflow configuration
(``config``, trusted) and each earlier tool result (``tool:<name>``, trusted or not per
field). An argument value found in no source was made up by the model. Attackers hide
instructions in untrusted text (an invoice note, an email) so that the model pays someone
else; the policy sees ``input.provenance`` and can refuse, or ask a person, when a payee
came only from such text. Matching is exact on normalised values, so a look-alike never
borrows the trust of the real value. Pure: no I/O.

Matching rules:

- Kinds, detected from the argument value (``normalise``): EVM address (``0x`` + 40 hex,
  compared lower-cased, so checksummed and lower-case forms match); IBAN (2 letters,
  2 digits, 11-30 letters or digits, spaces allowed; compared upper-case without spaces);
  email (lower-cased); URL (scheme and host lower-cased, the ``/`` of an empty path dropped;
  it also yields its host, so a host argument is found in a URL naming it, but a URL
  argument is not found by its host alone); host (lower-cased); decimal (by value: "10",
  "10.0", 10 and 10.0 are equal, "100" is not "10"; "1,250.50" is 1250.5; "49,99" is 49.99; leading zeros
  make it text); anything else is text (Unicode NFKC, surrounding whitespace trimmed,
  case-sensitive). Booleans and None are not traced.
- A scalar source field whose normalised value equals the argument's is an occurrence;
  its context is the whole value (cut at 120 characters).
- In a string field holding longer text, tokens of the argument's kind are found by
  pattern (addresses, IBANs in capitals including the spaced "GB82 WEST 1234 5698 7654 32"
  form, emails, URLs, hosts, decimals) and compared normalised. A token never starts or
  ends inside a longer one, so a prefix of a longer hex string, "2500.5" or "1250.50" do
  not match "250.5". Text is found only at token boundaries: the characters just before
  and after are not letters, digits, "_" or "-" ("A-1001" is not in "A-10011" or
  "XA-1001"). Where a spaced IBAN's end is ambiguous, the longest form passing the
  mod-97 check is taken.
- Short generic values are noise: a text argument under 3 characters ("ok") and a
  one-digit decimal ("1", "5.00") are matched only against whole scalar fields. Two-digit
  amounts are looked for in text: "refund 45 EUR" in a ticket is where 45.00 came from.
- A source's ``echoes`` (values a tool merely repeats from its own arguments, such as a
  payment confirmation) are never an occurrence for an argument equal to one of them, for
  one whose other form is one of them (a URL whose host was an argument), or for one found
  inside an argument's text (a search query naming an address): taint is not laundered
  through a tool that repeats what it was given. Other values still count.
- An argument that Unicode folding (NFKC) changes — fullwidth letters, ligatures — is
  never trusted: the tool would act on a spelling no trusted source wrote.
- Output is deterministic: occurrences in source order, then field order, then position
  in text; at most 5 per source field and 20 per argument; context is at most 40
  characters each side of the match, "…" where cut, whitespace shown as spaces.
  ``trusted`` is true iff some occurrence is trusted, counting those past the cap (the
  first trusted one then takes the last place in the list, so a reader sees why); a
  value found nowhere has no sources and is untrusted.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from engine.boundary.normalise import normalise, scannable, tokens

__all__ = [
    "ArgumentProvenance",
    "Occurrence",
    "Source",
    "normalise",
    "provenance",
    "provenance_document",
    "source_of",
]

MAX_PER_FIELD = 5
MAX_PER_ARGUMENT = 20
CONTEXT_CHARS = 40
MAX_SCALAR_CONTEXT = 120
_INDEX = re.compile(r"\[\d+\]")
_AMBIGUOUS = re.compile(r"[.\[\]\"]")  # characters of a path, in a key
_SPACE = re.compile(r"\s")


class Source(BaseModel):
    """One labelled piece of data a run has seen; nested values are walked."""

    model_config = ConfigDict(frozen=True)

    label: str  # "user" | "config" | "tool:<name>"
    field: str  # path inside it, "" for a bare scalar
    trusted: bool
    value: Any
    call_id: str | None = None  # for tool results: the call that produced it
    echoes: list[Any] = Field(default_factory=list)  # values it merely repeats: never a source for them


class Occurrence(BaseModel):
    """Where one argument value was found; serialise with ``by_alias=True`` for ``from``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    from_: str = Field(alias="from")
    field: str
    trusted: bool
    context: str
    call_id: str | None = None


class ArgumentProvenance(BaseModel):
    """Every place one argument value was found; trusted iff one of them is."""

    model_config = ConfigDict(frozen=True)

    sources: list[Occurrence]
    trusted: bool


class _Field(NamedTuple):
    path: str
    value: Any
    forms: set[tuple[str, str]]
    text: str | None


class _Prepared(NamedTuple):
    echoed: set[tuple[str, str]]  # forms of the values the source repeats from its call's arguments
    echoed_text: list[str]  # those arguments' text, where a repeated value may sit inside a sentence
    fields: list[_Field]

    def repeats(self, forms: list[tuple[str, str]]) -> bool:
        """Whether the source only repeats this value: one of its forms (a URL's host too) is an argument of
        the source's own call, or the value sits in an argument's text (a query naming an address)."""
        if any(form in self.echoed for form in forms):
            return True
        form = forms[0]
        return scannable(*form) and any(next(tokens(t, *form), None) is not None for t in self.echoed_text)


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Each scalar inside a JSON value with its path (``a.b``, ``items[2].memo``)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            if _AMBIGUOUS.search(name):  # a key such as "amount.x" must not pass for a field under "amount"
                yield from _leaves(item, f"{path}[{json.dumps(name)}]")
            else:
                yield from _leaves(item, f"{path}.{name}" if path else name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _join(field: str, sub: str) -> str:
    return field if not sub else sub if not field else f"{field}{sub}" if sub.startswith("[") else f"{field}.{sub}"


def _field_trust(path: str, trusted: bool | Mapping[str, bool]) -> bool:
    """The trust of one field: the longest listed path covering it (indices optional), else untrusted."""
    if isinstance(trusted, bool):
        return trusted
    bare = _INDEX.sub("", path).lstrip(".")
    covering = [
        (len(key), value)
        for key, value in trusted.items()
        if any(form == key or form.startswith((f"{key}.", f"{key}[")) for form in (path, bare))
    ]
    return max(covering, key=lambda item: item[0])[1] if covering else False


def source_of(
    label: str,
    value: Any,
    *,
    trusted: bool | Mapping[str, bool],
    call_id: str | None = None,
    echoes: Sequence[Any] = (),
) -> list[Source]:
    """One ``Source`` per leaf of a JSON document, each with its own trust.

    ``trusted`` is one bool for the whole document, or a mapping from a top-level field or
    dotted path (list indices may be left out: ``amount`` covers ``[3].amount``) to a bool;
    unlisted fields are untrusted, because unlabelled output is untrusted. ``echoes`` are
    the values the tool repeats from its own arguments (pass ``[arguments]``).
    """
    repeated = list(echoes)
    return [
        Source(label=label, field=path, trusted=_field_trust(path, trusted), value=leaf, call_id=call_id,
               echoes=repeated)
        for path, leaf in _leaves(value, "")
    ]


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text)


def _context(text: str, start: int, end: int) -> str:
    left, right = max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)
    return _clean(("…" if left else "") + text[left:right] + ("…" if right < len(text) else ""))


def _scalar_context(value: Any) -> str:
    text = _clean(value if isinstance(value, str) else str(value))
    return text if len(text) <= MAX_SCALAR_CONTEXT else text[:MAX_SCALAR_CONTEXT] + "…"


def _contexts(form: tuple[str, str], field: _Field) -> list[str]:
    """Contexts of the argument's occurrences in one source field, at most ``MAX_PER_FIELD``."""
    if form in field.forms:
        return [_scalar_context(field.value)]
    if field.text is None or not scannable(*form):
        return []
    spans = islice(tokens(field.text, form[0], form[1]), MAX_PER_FIELD)
    return [_context(field.text, start, end) for start, end in spans]


def _prepare(source: Source) -> _Prepared:
    repeated = [leaf for _, leaf in _leaves(source.echoes, "")]
    echoed = {form for leaf in repeated for form in normalise(leaf)}
    echoed_text = [unicodedata.normalize("NFKC", leaf) for leaf in repeated if isinstance(leaf, str)]
    fields = [
        _Field(_join(source.field, sub), leaf, set(normalise(leaf)),
               unicodedata.normalize("NFKC", leaf) if isinstance(leaf, str) else None)
        for sub, leaf in _leaves(source.value, "")
    ]
    return _Prepared(echoed, echoed_text, fields)


def _trace(forms: list[tuple[str, str]], sources: Sequence[Source], prepared: list[_Prepared],
           folded: bool) -> ArgumentProvenance:
    form = forms[0]
    found: list[Occurrence] = []
    trusted = False
    for source, ready in zip(sources, prepared, strict=True):
        if (len(found) >= MAX_PER_ARGUMENT and (trusted or not source.trusted)) or ready.repeats(forms):
            continue
        for field in ready.fields:
            contexts = _contexts(form, field)
            trusted = trusted or (source.trusted and bool(contexts))
            found.extend(
                Occurrence(from_=source.label, field=field.path, trusted=source.trusted, context=context,
                           call_id=source.call_id)
                for context in contexts
            )
    kept = found[:MAX_PER_ARGUMENT]
    if trusted and not any(o.trusted for o in kept):  # whoever reads the list sees why it is trusted
        kept[-1] = next(o for o in found if o.trusted)
    # A value that Unicode folding changed (fullwidth letters, ligatures) is not what the trusted source
    # says, byte for byte, whatever it matched: the tool would act on the other spelling.
    return ArgumentProvenance(sources=kept, trusted=trusted and not folded)


def provenance(args: Mapping[str, Any], sources: Sequence[Source]) -> dict[str, ArgumentProvenance]:
    """Where each argument value occurs among ``sources``, by argument path (``to``, ``payee.iban``).

    Containers are walked; booleans and None are not traced. See the module docstring for
    the matching rules.
    """
    prepared = [_prepare(source) for source in sources]
    result: dict[str, ArgumentProvenance] = {}
    for path, value in _leaves(args, ""):
        forms = normalise(value)
        if forms:
            folded = isinstance(value, str) and unicodedata.normalize("NFKC", value) != value
            result[path] = _trace(forms, sources, prepared, folded)
    return result


def provenance_document(args: Mapping[str, Any], sources: Sequence[Source]) -> dict[str, Any]:
    """The JSON form of ``provenance`` that the policy reads as ``input.provenance``."""
    return {
        path: entry.model_dump(mode="json", by_alias=True) for path, entry in provenance(args, sources).items()
    }
