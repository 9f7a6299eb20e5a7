"""``python -m engine.cli``: the same as the ``airlock`` console script."""

from engine.cli import main_entry

main_entry()
