"""Settings: the only reader of the environment.

Every value comes from an ``AIRLOCK_``-prefixed environment variable (nested
groups use ``__``: ``AIRLOCK_TEMPORAL__ADDRESS``) or its default. Settings are
built once, by the CLI or by a test, and passed down; nothing reads them at
import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TemporalSettings(BaseModel):
    """Where runs live. Defaults point at the dev server `airlock up` starts.

    A cluster with TLS takes a server CA (``tls_ca_path``, when its certificate is not from a public CA),
    a client certificate and key for mTLS, and ``tls_server_name`` when the certificate names another host
    than ``address``; Temporal Cloud takes mTLS or an API key (``api_key`` or ``api_key_file``). TLS is on
    when any of these is given, unless ``tls`` says otherwise.
    """

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "airlock"
    ui_port: int = 8233
    tls: bool | None = None  # None: on when a CA, client certificate, server name or API key is given
    tls_ca_path: Path | None = None
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    tls_server_name: str | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    # How long a decision (approve, reject, edit) waits for a worker to take it; past that it is queued for
    # delivery (a signal, durable in the run's history) and applies when a worker is back. At most
    # AIRLOCK_AUTH__ASSERTION_TTL_S (see ``Settings``).
    decision_wait_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _tls_settings_agree(self) -> TemporalSettings:
        if (self.tls_cert_path is None) != (self.tls_key_path is None):
            raise ValueError("AIRLOCK_TEMPORAL__TLS_CERT_PATH and AIRLOCK_TEMPORAL__TLS_KEY_PATH go together "
                             "(mTLS needs the client certificate and its key)")
        if self.tls is False and (self.tls_ca_path or self.tls_cert_path or self.tls_server_name):
            raise ValueError("AIRLOCK_TEMPORAL__TLS is false, but a TLS CA, client certificate or server name is "
                             "set: they would be ignored and the connection left unencrypted")
        host = self.address.rsplit(":", 1)[0].strip("[]")
        if self.tls is False and (self.api_key or self.api_key_file) and host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"AIRLOCK_TEMPORAL__TLS is false, but an API key is set: it would cross the network to "
                             f"{self.address} unencrypted (only a loopback address may take a key without TLS)")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether the client connects with TLS."""
        if self.tls is not None:
            return self.tls
        return any(v is not None for v in (self.tls_ca_path, self.tls_cert_path, self.tls_server_name, self.api_key,
                                           self.api_key_file))

    def ui_url(self, run_id: str) -> str:
        """A run in the dev server's web UI."""
        return f"http://127.0.0.1:{self.ui_port}/namespaces/{self.namespace}/workflows/{run_id}"


class OpaSettings(BaseModel):
    """The policy engine. `url` may point at a sidecar or a remote OPA."""

    url: str = "http://127.0.0.1:8181"
    token: SecretStr | None = None
    timeout_s: float = Field(default=2.0, gt=0)  # one request; a slower answer counts as a transient failure
    rule: str = "decision"
    # One decision, retries included, takes at most this long; past it the call is denied (fail closed).
    decision_budget_s: float = Field(default=5.0, gt=0)
    # At most this many retries of a transient failure (OPA unreachable, too slow, 5xx) within the budget.
    retries: int = Field(default=6, ge=0)


class ChainSettings(BaseModel):
    """The EVM JSON-RPC endpoint (anvil locally) and the account that signs.

    The signing key comes from ``signer_key`` or from an encrypted keystore
    file (``keystore_path`` with ``keystore_password`` or
    ``keystore_password_file``); it is never given to the model, never logged.
    Without either, chain tools can read but every send fails closed.
    """

    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = 31337
    rpc_timeout_s: float = 10.0
    signer_key: SecretStr | None = None
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    confirmations: int = Field(default=1, ge=1)
    receipt_timeout_s: float = 120.0
    # A transaction held up this long behind nonces nobody sent (the node was reset, or lost them) gets them
    # filled with no-ops; ``airlock doctor`` lists transactions not mined after this long.
    stuck_after_s: float = Field(default=30.0, gt=0)


class LlmSettings(BaseModel):
    """Model endpoints. `scripted_url` is the offline replay endpoint."""

    scripted_url: str = "http://127.0.0.1:8600/v1"


class UiSettings(BaseModel):
    """The web UI and JSON API."""

    host: str = "127.0.0.1"
    port: int = 8700
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None  # or a file holding it (every instance behind one address shares it)
    session_ttl_s: int = 8 * 3600
    # Failed sign-ins within the window, before further attempts are refused (429) until the oldest ages out:
    # per user and address (so nobody locks a user out from everywhere), and, more loosely, per address.
    sign_in_max_failures: int = Field(default=5, ge=1)
    sign_in_max_failures_per_address: int = Field(default=50, ge=1)
    sign_in_window_s: int = Field(default=15 * 60, ge=1)
    secure_cookies: bool = False
    trusted_header: str | None = None
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]  # addresses the trusted header is taken from
    forwarded_for: bool = False  # take the client's address from a trusted proxy's X-Forwarded-For
    page_size: int = 20


class ApiClientSettings(BaseModel):
    """Where the CLI finds the JSON API, and the token it uses there."""

    url: str = "http://127.0.0.1:8700"
    token: SecretStr | None = None


class AuthSettings(BaseModel):
    """The keys of signed assertions: how a person's identity reaches a run.

    Whoever checks credentials (UI, JSON API, the CLI in local mode) signs a
    short-lived assertion with the private key; workers verify it with the
    public key. In production give the private key only to UI/API instances
    and the public key to workers. Locally both are generated once into
    ``<state>/keys/``.
    """

    signing_key: SecretStr | None = None  # PEM, Ed25519 private key
    signing_key_file: Path | None = None
    verify_key: str | None = None  # PEM, Ed25519 public key
    verify_key_file: Path | None = None
    assertion_ttl_s: int = Field(default=120, ge=5, le=3600)
    # Who may cancel a run besides its requester (a JSON list, e.g. '["ops"]'): people with one of these roles,
    # in the run's tenant.
    cancel_roles: list[str] = []


class OtelSettings(BaseModel):
    """OpenTelemetry traces; off unless ``endpoint`` is set."""

    endpoint: str | None = None  # an OTLP/HTTP collector, e.g. http://127.0.0.1:4318
    service_name: str = "airlock"


class Settings(BaseSettings):
    """All Airlock settings; see README "Settings" for each variable."""

    model_config = SettingsConfigDict(
        env_prefix="AIRLOCK_", env_nested_delimiter="__", extra="ignore"
    )

    project_dir: Path = Field(default_factory=Path.cwd)
    workflows_dir: Path | None = None
    tools_dir: Path | None = None
    policies_dir: Path | None = None
    state_dir: Path | None = None
    database_url: str | None = None
    database_url_file: Path | None = None  # or a file holding it (the URL carries the database's password)
    # glibc malloc arenas a worker keeps (0: glibc's default, 8 per core). Its many short-lived threads
    # (activity and store hand-offs) each got an arena and the worker's resident size kept creeping up.
    worker_malloc_arenas: int = Field(default=2, ge=0, le=64)
    # On SIGTERM or SIGINT, how long `airlock worker` lets activities it runs finish before cancelling them
    worker_graceful_shutdown_s: float = Field(default=30.0, ge=0, le=3600)

    temporal: TemporalSettings = TemporalSettings()
    opa: OpaSettings = OpaSettings()
    chain: ChainSettings = ChainSettings()
    llm: LlmSettings = LlmSettings()
    ui: UiSettings = UiSettings()
    api: ApiClientSettings = ApiClientSettings()
    otel: OtelSettings = OtelSettings()
    auth: AuthSettings = AuthSettings()

    @model_validator(mode="after")
    def _assertions_outlive_the_wait(self) -> Settings:
        """A decision no worker took within ``decision_wait_s`` is queued then, and judged as of then: its
        assertion (valid ``assertion_ttl_s`` from signing, give or take 5 s) must still be valid, or every
        queued decision would be refused."""
        if self.auth.assertion_ttl_s < self.temporal.decision_wait_s:
            raise ValueError(
                f"AIRLOCK_AUTH__ASSERTION_TTL_S ({self.auth.assertion_ttl_s}) must be at least "
                f"AIRLOCK_TEMPORAL__DECISION_WAIT_S ({self.temporal.decision_wait_s:g}): a decision no worker "
                "takes within the wait is queued then and judged as of then, so an assertion that expires "
                "sooner would have every queued decision refused")
        return self

    def model_post_init(self, __context: object) -> None:
        self.project_dir = self.project_dir.resolve()
        self.workflows_dir = (self.workflows_dir or self.project_dir / "workflows").resolve()
        self.tools_dir = (self.tools_dir or self.project_dir / "tools").resolve()
        self.policies_dir = (self.policies_dir or self.project_dir / "policies").resolve()
        self.state_dir = (self.state_dir or self.project_dir / ".airlock").resolve()
        if self.database_url is None and self.database_url_file is not None:
            self.database_url = read_secret_file(self.database_url_file, "AIRLOCK_DATABASE_URL_FILE")
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.state_dir / 'airlock.db'}"

    @property
    def import_roots(self) -> list[Path]:
        """Folders put on ``sys.path`` so ``tools.x:fn`` and custom graphs import."""
        roots = [self.project_dir]
        if self.tools_dir and self.tools_dir.parent not in roots:
            roots.append(self.tools_dir.parent)
        return roots

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL, with a bare ``postgresql://`` mapped to psycopg 3."""
        url = str(self.database_url)
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url


def read_secret_file(path: Path, setting: str) -> str:
    """A secret kept in a file (a compose or Kubernetes secret), without its trailing newline.

    Raises:
        ValueError: the file cannot be read or is empty, named with its setting.
    """
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"{setting}: {path} is empty")
    return value


def secret_from_env(name: str) -> str | None:
    """Read a secret (an API key) named by a workflow spec; never logged."""
    return os.environ.get(name)
