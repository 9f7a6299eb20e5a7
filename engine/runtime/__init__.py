"""The Temporal side of a run: the workflow, the graph it runs (nodes, compiler), the activities,
the worker, the payloads they exchange, and the client operations that start and decide runs."""
