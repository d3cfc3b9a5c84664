"""Keep clear tokens out of the process list: ``gateway serve --token T`` re-executes itself
with the tokens hashed in the environment and ``--token`` gone from its command line.

``/proc/PID/cmdline`` is readable by every local user for the whole life of the process; the
environment only by its owner, and what goes there is only the SHA-256 of each token. The
clear token is visible for the fraction of a second before the re-exec; the config file or
``GATEWAY_TOKENS`` avoid even that.
"""

from __future__ import annotations

import sys

from .. import auth, config

ENV = "GATEWAY_TOKENS"


def hashed_spec(spec: str) -> str:
    """A tokens spec with every clear token replaced by its digest."""
    return ",".join(f"{identity}:{token}" for token, identity in
                    auth.hashed_tokens(config.parse_tokens(spec)).items())


def has_clear_token(spec: str) -> bool:
    return any(not auth.is_digest(token) for token in config.parse_tokens(spec))


def without_token_option(args: list[str]) -> list[str]:
    """``args`` without ``--token VALUE`` / ``--token=VALUE``."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--token":
            skip = True
        elif not arg.startswith("--token="):
            kept.append(arg)
    return kept


def reexec_command(args: list[str]) -> list[str]:
    """The command line that runs ``gateway ARGS`` again with this interpreter."""
    flags = ["-P"] if sys.flags.safe_path else []  # keep a PYTHONPATH-only gateway/ first
    return [sys.executable, *flags, "-m", "gateway", *args]
