"""Shared fixtures: real services on free ports, started and stopped here.

The database fixture runs every test that uses it on SQLite and on PostgreSQL
(a throwaway cluster started with Debian's binaries as the ``postgres`` user).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
from temporalio.client import Client

from engine.adapters.chain import Chain
from engine.config import Settings
from engine.local import processes as stack
from engine.runtime.temporal import connect
from engine.store.db import migrate
from tests.postgres import postgres_cluster

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Services:
    temporal_address: str
    opa_url: str
    scripted_url: str
    logs: Path


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Temporal dev server, OPA (serving policies/) and the scripted model."""
    base = tmp_path_factory.mktemp("services")
    t_port, ui_port, opa_port, llm_port = (stack.free_port() for _ in range(4))
    procs = []
    try:
        procs.append(stack.launch_temporal(t_port, ui_port, base / "temporal.db", base / "temporal.log",
                                           tethered=True))
        procs.append(stack.launch_opa(opa_port, ROOT / "policies", base / "opa.log", tethered=True))
        procs.append(stack.launch_scripted(llm_port, base / "scripted.log", tethered=True))
        yield Services(f"127.0.0.1:{t_port}", f"http://127.0.0.1:{opa_port}",
                       f"http://127.0.0.1:{llm_port}/v1", base)
    finally:
        for proc in reversed(procs):
            stack.stop_process(proc)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port; the server dies with this test run."""
    try:
        with postgres_cluster() as url:
            yield url
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database: SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'airlock.db'}"
        migrate(url)
        add_people(url)
        return url
    return postgres_database(request.getfixturevalue("postgres_url"))


def postgres_database(cluster_url: str) -> str:
    """A new, migrated database with the test accounts on the throwaway cluster; its URL."""
    import sqlalchemy

    name = "t_" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(cluster_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = cluster_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    add_people(url)
    return url


# Test accounts (tenant ``default``); roles a test needs beyond these it adds itself.
PASSWORD = "test-password"
PEOPLE = {"alice": ["support", "treasury"], "bob": ["support-leads", "treasury-approvers"],
          "carol": ["support-leads", "treasury-approvers"], "dave": ["support"]}


@lru_cache(maxsize=1)
def _password_hash() -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(PASSWORD)  # once per session: argon2 is slow on purpose


def add_people(db_url: str) -> None:
    """The test accounts, with the password ``PASSWORD`` (rows written directly: hashing once is enough)."""
    from sqlmodel import Session

    from engine.store.db import make_engine
    from engine.store.tables import UserRow

    engine = make_engine(db_url)
    with Session(engine) as session:
        for name, roles in PEOPLE.items():
            if session.get(UserRow, name) is None:
                session.add(UserRow(name=name, password_hash=_password_hash(), roles=roles, tenants=["default"]))
        session.commit()
    engine.dispose()


@lru_cache(maxsize=1)
def signing_key() -> str:
    """The Ed25519 key every test process signs assertions with (UI, CLI, helpers); workers verify it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()).decode()


def copy_workflows(target: Path) -> None:
    """The project's shipped workflows (with their prompts, scripts and graphs) into a test's folder."""
    shutil.copytree(ROOT / "workflows", target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))


@pytest.fixture
def settings(services: Services, db_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own task queue and database.

    The worker serves the workflows in the test's own folder: a copy of the
    shipped ones, plus the specs the test writes there (``helpers.write_spec``).
    """
    copy_workflows(tmp_path)
    return Settings(
        project_dir=ROOT, workflows_dir=tmp_path, state_dir=tmp_path / "state", database_url=db_url,
        temporal={"address": services.temporal_address, "task_queue": f"tq-{uuid.uuid4().hex[:8]}"},
        opa={"url": services.opa_url}, llm={"scripted_url": services.scripted_url},
        auth={"signing_key": signing_key()},
    )


@pytest.fixture(scope="session")
async def client(services: Services) -> AsyncIterator[Client]:
    from engine.config import TemporalSettings

    yield await connect(TemporalSettings(address=services.temporal_address))


@dataclass
class Web:
    url: str
    settings: Settings


@pytest.fixture
async def web(client: Client, settings: Settings) -> AsyncIterator[Web]:
    """The UI served by uvicorn on a free port, plus a worker, on this test's database."""
    import asyncio
    import threading

    import uvicorn

    from engine.runtime.worker import build_worker
    from engine.store.db import Database
    from engine.ui.app import create_app

    settings.ui.port = stack.free_port()
    app = create_app(settings, db=Database(settings.db_url), connect=lambda: connect(settings.temporal))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.ui.port, log_level="warning",
                                           proxy_headers=False))  # as `airlock ui` serves it
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    async with build_worker(client, settings):
        while not server.started:
            await asyncio.sleep(0.05)
        yield Web(f"http://127.0.0.1:{settings.ui.port}", settings)
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


ODD_POLICIES = {
    "undefined.rego": """package airlock.test.undefined
import rego.v1
decision := {"allow": true} if input.tool.name == "never_proposed"
""",
    "malformed.rego": """package airlock.test.malformed
import rego.v1
decision := {"allow": "yes", "reasons": ["looks fine"]}
""",
    "noapprovers.rego": """package airlock.test.noapprovers
import rego.v1
decision := {"allow": false, "require_approval": true, "approvers": [], "reasons": ["someone must look"]}
""",
    "quorum.rego": """package airlock.test.quorum
import rego.v1
decision := {"allow": true, "require_approval": true, "approvers": ["treasury-ops"], "min_approvals": 2,
             "reasons": ["two people must approve"]}
""",
}


@pytest.fixture(scope="session")
def odd_opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second OPA serving policies that misbehave on purpose."""
    folder = tmp_path_factory.mktemp("odd-policies")
    for name, text in ODD_POLICIES.items():
        (folder / name).write_text(text)
    port = stack.free_port()
    proc = stack.launch_opa(port, folder, folder / "opa.log", tethered=True)
    yield f"http://127.0.0.1:{port}"
    stack.stop_process(proc)


# anvil's first development account: a published test key, worthless outside a local node.
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real anvil node on a free port (chain id 31337)."""
    port = stack.free_port()
    folder = tmp_path_factory.mktemp("anvil")
    proc = stack.launch_anvil(port, folder / "anvil.log", tethered=True)
    yield f"http://127.0.0.1:{port}"
    stack.stop_process(proc)


@dataclass
class DevChainNode:
    url: str
    chain: Chain
    token: str
    treasury: str
    keystore: Path
    password_file: Path

    def chain_settings(self, **overrides: object) -> dict[str, object]:
        """Settings for a worker that signs as the treasury (through the keystore `prepare` wrote)."""
        return {"rpc_url": self.url, "keystore_path": self.keystore, "keystore_password_file": self.password_file,
                "receipt_timeout_s": 20, **overrides}

    def rpc(self, method: str, *params: object) -> object:
        """A raw JSON-RPC call (anvil's evm_mine, evm_setAutomine, ...)."""
        import requests

        reply = requests.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                              timeout=10).json()
        assert "error" not in reply, reply
        return reply["result"]


@pytest.fixture
def devchain(tmp_path: Path) -> Iterator[DevChainNode]:
    """A fresh anvil with the demo token deployed and the treasury funded (100000 tUSD)."""
    from engine.local import devchain as dev

    port = stack.free_port()
    proc = stack.launch_anvil(port, tmp_path / "anvil.log", tethered=True)
    try:
        url = f"http://127.0.0.1:{port}"
        ready = dev.prepare(url, tmp_path / "chain-state")
        yield DevChainNode(url, Chain(url), ready.token, ready.treasury, ready.keystore, ready.password_file)
    finally:
        stack.stop_process(proc)


@pytest.fixture
def chain_settings(settings: Settings, devchain: DevChainNode) -> Settings:
    """This test's settings with the worker signing as the treasury on the fresh anvil."""
    from engine.config import ChainSettings

    settings.chain = ChainSettings(**devchain.chain_settings())  # type: ignore[arg-type]
    return settings
