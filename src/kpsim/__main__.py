"""``python -m kpsim``."""

from kpsim.cli.entry import run

run()
