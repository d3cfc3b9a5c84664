"""Helpers the tests import (``from support.gateways import start_gateway``); fixtures live in
the conftest.py files. ``tests/`` is on sys.path through pytest's ``pythonpath`` option."""
