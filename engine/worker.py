"""The Airlock worker: the workflow, its activities and the registered graphs."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from langgraph.graph import StateGraph
from temporalio.client import Client
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import Worker

from engine.activities import AirlockActivities
from engine.chain_tx import ChainAccess
from engine.compiler import AGENT_GRAPH, agent_graph, build_graph, graph_name
from engine.config import Settings
from engine.errors import SpecError
from engine.llm import ModelClient
from engine.policy import PolicyEngine
from engine.spec import add_import_roots, load_spec
from engine.store.db import make_engine, migrate
from engine.tracing import RunTracingInterceptor, Tracing
from engine.workflow import AgentRunWorkflow

logger = logging.getLogger(__name__)


def spec_files(workflows_dir: Path) -> list[Path]:
    """Workflow definitions in a folder (YAML and Python)."""
    if not workflows_dir.is_dir():
        return []
    return sorted(p for p in workflows_dir.iterdir() if p.suffix in (".yaml", ".yml", ".py")
                  and not p.name.startswith("_"))


def graphs_for(settings: Settings) -> dict[str, StateGraph]:
    """The default agent graph plus every custom graph a known spec names."""
    graphs: dict[str, StateGraph] = {AGENT_GRAPH: agent_graph()}
    add_import_roots(*settings.import_roots)
    for path in spec_files(settings.workflows_dir or Path()):
        try:
            spec = load_spec(path, project_dir=settings.project_dir)
        except SpecError as exc:  # a bad file must not stop the others; `airlock validate` details it
            logger.warning("skipping workflow %s: %s", path, str(exc).splitlines()[0])
            continue
        if spec.graph:
            graphs[graph_name(spec)] = build_graph(spec.graph)
    return graphs


def build_worker(client: Client, settings: Settings) -> Worker:
    """A worker for the configured task queue, with its dependencies built."""
    add_import_roots(*settings.import_roots)
    url = settings.db_url
    migrate(url)
    db = make_engine(url)
    activities = AirlockActivities(engine=db, database_url=url, policy=PolicyEngine(settings.opa),
                                   model=ModelClient(settings.llm), chain=ChainAccess.from_settings(settings.chain, db))
    plugin = LangGraphPlugin(graphs=graphs_for(settings),
                             default_activity_options={"start_to_close_timeout": timedelta(minutes=5)})
    tracing = Tracing(settings.otel)
    traced = any(isinstance(i, RunTracingInterceptor) for i in client.config()["interceptors"])
    worker = Worker(client, task_queue=settings.temporal.task_queue, workflows=[AgentRunWorkflow],
                    activities=activities.all(), plugins=[plugin],
                    interceptors=[] if traced else tracing.interceptors)  # a traced client's apply already
    worker.tracing = tracing  # type: ignore[attr-defined]  # flushed by whoever stops the worker
    return worker
