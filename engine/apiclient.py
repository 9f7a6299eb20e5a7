"""The JSON API from the caller's side: what the CLI uses when it has a token.

With ``AIRLOCK_API__TOKEN`` set, ``airlock approvals …``, ``approve``,
``reject``, ``edit`` and ``runs cancel`` go through the same HTTP API as the UI, as the token's
user. HTTP errors become Airlock errors here, once.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from engine.errors import AccessDeniedError, AirlockError, ApprovalError, InputError, NotFoundError
from engine.runtime.payloads import ApprovalDecisionResult
from engine.store.repo import ApprovalView

_BY_STATUS: dict[int, type[AirlockError]] = {403: AccessDeniedError, 404: NotFoundError, 409: ApprovalError,
                                             422: InputError}
M = TypeVar("M", bound=BaseModel)


class _Me(BaseModel):
    name: str


class _InboxPage(BaseModel):
    items: list[ApprovalView]
    total: int


class _Detail(BaseModel):
    approval: ApprovalView


class _Cancelled(BaseModel):
    run_id: str
    status: str


class ApiClient:
    """A thin, typed client of ``/api``."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout)

    def _call(self, method: str, path: str, answer: type[M], **kwargs: Any) -> M:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AirlockError(f"cannot reach the Airlock API at {self._http.base_url}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            message = str(message or response.text[:500])
            if response.status_code == 401:
                message = f"the API refused the token: {message}"
            raise _BY_STATUS.get(response.status_code, AirlockError)(message)
        try:
            return answer.model_validate(body)
        except ValidationError:
            raise AirlockError(f"{self._http.base_url}{path} did not answer with the Airlock API's JSON (HTTP "
                               f"{response.status_code}, {response.headers.get('content-type', 'no content type')}): "
                               "is AIRLOCK_API__URL right?") from None

    def me(self) -> str:
        """The name of the token's user."""
        return self._call("GET", "/api/me", _Me).name

    def inbox(self, *, status: str | None = "pending") -> list[ApprovalView]:
        """The inbox (every page), newest first."""
        items: list[ApprovalView] = []
        page = 1
        while True:
            body = self._call("GET", "/api/approvals", _InboxPage, params={"status": status or "", "page": page})
            items += body.items
            if len(items) >= body.total or not body.items:
                return items
            page += 1

    def approval(self, approval_id: str) -> ApprovalView:
        """One gated action."""
        return self._call("GET", f"/api/approvals/{approval_id}", _Detail).approval

    def decide(self, approval_id: str, *, decision: str, digest: str, comment: str | None) -> ApprovalDecisionResult:
        """Approve or reject."""
        return self._call("POST", f"/api/approvals/{approval_id}/decision", ApprovalDecisionResult,
                          json={"decision": decision, "digest": digest, "comment": comment})

    def edit(self, approval_id: str, *, args: dict[str, Any], digest: str,
             comment: str | None) -> ApprovalDecisionResult:
        """Correct the arguments."""
        return self._call("POST", f"/api/approvals/{approval_id}/edit", ApprovalDecisionResult,
                          json={"args": args, "digest": digest, "comment": comment})

    def cancel(self, run_id: str, *, reason: str) -> str:
        """Cancel a run; its status now (``cancelling``)."""
        return self._call("POST", f"/api/runs/{run_id}/cancel", _Cancelled, json={"reason": reason}).status
