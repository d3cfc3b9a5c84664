"""``python -m gateway``: the same as the ``gateway`` command."""

from .cli.main import main

main()
