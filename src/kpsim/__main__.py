"""``python -m kpsim``."""

from kpsim.cli import main

main()
