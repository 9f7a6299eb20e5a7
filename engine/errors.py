"""Airlock's error tree.

::

    AirlockError                    (retryable: no,  http 500)
    ├── SpecError                   a workflow spec is invalid       (http 422)
    ├── InputError                  run input is invalid             (http 422)
    ├── ToolArgumentsError          proposed args fail the schema    (http 422)
    ├── ApprovalError               an approval cannot be decided    (http 409)
    ├── AuthenticationError         who is asking cannot be proven   (http 401)
    ├── AccessDeniedError           proven, but not theirs to see or do (http 403)
    ├── DefinitionError             a run names no definition the worker has (http 422)
    ├── NotFoundError               an id names nothing              (http 404)
    ├── RunEndedError               a run that has ended cannot be cancelled (http 409)
    ├── ToolExecutionError          a tool raised while executing    (http 502)
    │   ├── TransactionRevertedError  the chain reverted a transaction
    │   └── TransactionDroppedError   a sent transaction can never be mined: its nonce went to another
    ├── ModelError                  the model endpoint refused us    (http 502)
    ├── ChainUnavailableError       the RPC node cannot be read      (retryable, http 503)
    ├── LeaseLostError              an action's lease lapsed before it began (retryable, http 409)
    └── StackError                  a local service failed to start  (http 503)

Activities raise Temporal ``ApplicationError`` with ``type`` set to the class
name, so workflows branch on the type and never on message text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class AirlockError(Exception):
    """Base of every error Airlock raises on purpose.

    Attributes:
        retryable: whether trying again may succeed.
        http_status: the status the JSON API answers with.
    """

    retryable: bool = False
    http_status: int = 500


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a workflow spec, located as ``path:line: field: message``."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


@dataclass
class SpecError(AirlockError):
    """A workflow spec is invalid.

    Attributes:
        issues: every problem found, each with file, line and field.
    """

    issues: list[SpecIssue] = field(default_factory=list)
    http_status = 422

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


class InputError(AirlockError):
    """Run input (``--input`` JSON or file) is malformed."""

    http_status = 422


class ToolArgumentsError(AirlockError):
    """Arguments proposed by the model do not match the tool's schema."""

    http_status = 422


class ApprovalError(AirlockError):
    """An approval decision was refused (requester, expired, decided, unknown)."""

    http_status = 409


class AuthenticationError(AirlockError):
    """A person's identity could not be proven: bad password or token, or an
    assertion that is unsigned, forged, expired, reused or bound to something else."""

    http_status = 401


class AccessDeniedError(AirlockError):
    """The person is known but may not see or do this (another tenant's run, a tenant they lack)."""

    http_status = 403


class DefinitionError(AirlockError):
    """A run request names a workflow, version or definition hash the worker does not have,
    or a definition names code or files outside the project."""

    http_status = 422


class NotFoundError(AirlockError):
    """An id (run, approval) names nothing."""

    http_status = 404


class RunEndedError(AirlockError):
    """A run was asked to change (be cancelled) after it ended."""

    http_status = 409


class ToolExecutionError(AirlockError):
    """A tool raised while executing an allowed action."""

    http_status = 502


class LeaseLostError(AirlockError):
    """The lease on what an action touches lapsed (and was taken) before its execution began: nothing ran;
    the retry takes the lease again and decides again."""

    retryable = True
    http_status = 409


class StackError(AirlockError):
    """A local stack component could not be started or reached."""

    retryable = True
    http_status = 503


class ModelError(AirlockError):
    """The model endpoint refused our request (4xx other than 429): not retried."""

    http_status = 502


class ChainUnavailableError(AirlockError):
    """The chain's JSON-RPC node could not be reached or answered an error."""

    retryable = True
    http_status = 503


class TransactionRevertedError(ToolExecutionError):
    """The chain refused a transaction: its simulation or its mined execution reverted.

    Attributes:
        reason: the decoded revert reason (``Error(string)``, a panic code or a
            custom error of the contract's ABI).
        tx_hash: the mined transaction, when it got that far.
    """

    def __init__(self, message: str, *, reason: str, tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.tx_hash = tx_hash


class TransactionDroppedError(ToolExecutionError):
    """A transaction that was signed (and perhaps sent) can never be mined: another transaction took its nonce.

    Nothing it would have done happened; the action may be proposed again.

    Attributes:
        tx_hash: the transaction that was dropped.
        nonce: the nonce it held.
        reason: what took the nonce (a no-op the operator released, a transaction sent outside Airlock, ...).
    """

    def __init__(self, message: str, *, tx_hash: str, nonce: int, reason: str) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash
        self.nonce = nonce
        self.reason = reason
