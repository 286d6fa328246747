"""``python -m kpsim``."""

from kpsim.cli.main import run

run()
