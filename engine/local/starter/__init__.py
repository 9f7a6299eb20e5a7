"""The project ``airlock init`` writes (these files, copied; see :mod:`engine.local.project`)."""
