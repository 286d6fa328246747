"""The command line: one click command per module, thin (options → api → render → echo).

The only package that prints or chooses an exit code. ``main.py`` holds the group and
``show``/``trace``; the other commands load lazily (``main.LAZY_COMMANDS``)."""
