"""The Airlock worker: the workflow, its activities and the registered graphs."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph
from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Worker

from engine.adapters.chain_access import ChainAccess
from engine.adapters.chain_tx import Signer
from engine.adapters.llm import ModelClient
from engine.adapters.tracing import RunTracingInterceptor, Tracing
from engine.boundary.identity import Verifier
from engine.boundary.policy import OpaPolicy
from engine.config import Settings
from engine.runtime.activities import AirlockActivities
from engine.runtime.breakers import StoredBreakers
from engine.runtime.compiler import AGENT_GRAPH, agent_graph, build_graph, graph_name
from engine.runtime.definitions import DefinitionRegistry, check_graph
from engine.runtime.workflow import AgentRunWorkflow
from engine.spec import add_import_roots
from engine.store.db import Database

logger = logging.getLogger(__name__)


def graphs_for(registry: DefinitionRegistry) -> dict[str, StateGraph[Any, Any, Any, Any]]:
    """The default agent graph plus every custom graph a served spec names, each checked.

    Raises:
        DefinitionError: a custom graph could reach a tool without the boundary.
    """
    graphs: dict[str, StateGraph[Any, Any, Any, Any]] = {AGENT_GRAPH: agent_graph()}
    for spec in registry.specs():
        if spec.graph and graph_name(spec) not in graphs:
            graph = build_graph(spec.graph)
            check_graph(graph, f"{spec.source}: graph {spec.graph}")
            graphs[graph_name(spec)] = graph
    registry.graphs = set(graphs)
    return graphs


def check_settings(settings: Settings) -> None:
    """Read the keys a worker needs, so a malformed one is a located error before anything connects.

    Raises:
        InputError: naming the setting (or file) and what is wrong with it.
    """
    Verifier.from_settings(settings)
    Signer.from_settings(settings.chain)


_M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap this process's glibc malloc arenas (``mallopt(M_ARENA_MAX)``); False where there is no glibc
    (musl, macOS) or ``arenas`` is 0 (leave the default). Called once, before the worker's threads start."""
    if arenas <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc: nothing to cap
        return False


def build_worker(client: Client, settings: Settings) -> Worker:
    """A worker for the configured task queue, with its dependencies built."""
    add_import_roots(*settings.import_roots)
    db = Database(settings.db_url).migrate()
    registry = DefinitionRegistry(settings.workflows_dir or Path("workflows"), settings.project_dir)
    plugin = LangGraphPlugin(graphs=graphs_for(registry),
                             default_activity_options={"start_to_close_timeout": timedelta(minutes=5)})
    activities = AirlockActivities(db=db, policy=OpaPolicy(settings.opa),
                                   model=ModelClient(settings.llm, StoredBreakers(db)), registry=registry,
                                   verifier=Verifier.from_settings(settings),
                                   chain=ChainAccess.from_settings(settings.chain, db))
    tracing = Tracing(settings.otel)
    traced = any(isinstance(i, RunTracingInterceptor) for i in client.config()["interceptors"])
    worker = Worker(client, task_queue=settings.temporal.task_queue, workflows=[AgentRunWorkflow],
                    activities=activities.all(), plugins=[plugin],
                    graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_s),
                    interceptors=[] if traced else tracing.interceptors)  # a traced client's apply already
    worker.tracing = tracing  # type: ignore[attr-defined]  # flushed by whoever stops the worker
    return worker
