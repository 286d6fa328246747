"""``python -m kpsim``."""

from kpsim.cli import run

run()
