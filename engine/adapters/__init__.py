"""Adapters, each the only importer of its library: the model (openai), the chain (web3 and the
exactly-once sender) and tracing (OpenTelemetry)."""
