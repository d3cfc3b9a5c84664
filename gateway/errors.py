"""The gateway's exception hierarchy: callers catch ``GatewayError`` or a precise leaf."""

from __future__ import annotations

from collections.abc import Iterable


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose.

    ``code`` is the machine-readable code sent to clients in an error chunk.
    """

    code = "internal_error"


class ProtocolError(GatewayError):
    """An inbound message is malformed, unknown or has fields of the wrong type."""

    code = "bad_request"

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class UnknownLanguage(ProtocolError):
    """A request named a language this gateway does not know."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unknown_language")


class LanguageUnavailable(GatewayError):
    """A known language whose runtime this installation lacks (reported on /healthz)."""

    code = "language_unavailable"


class LanguageMismatch(ProtocolError):
    """A request named another language than the one its thread already runs."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="language_mismatch")


class NotAllowed(GatewayError):
    """The identity may not act on this thread (it belongs to somebody else)."""

    code = "forbidden"


class IdentityLimit(GatewayError):
    """One identity reached its own share (``max_threads_per_identity``): others keep theirs."""

    code = "identity_limit"


class PoolExhausted(GatewayError):
    """No kernel could be leased: the pool is at its maximum size or draining."""

    code = "pool_exhausted"


class UidsExhausted(PoolExhausted):
    """Every host uid of the kernels' range is taken by a working directory."""


class QueueFull(GatewayError):
    """A thread already has as many executions queued as the settings allow."""

    code = "queue_full"


class KernelStartError(GatewayError):
    """A kernel (or its sandbox) failed to start."""

    code = "kernel_start_failed"


class ZygoteUnavailable(KernelStartError):
    """The fork-server for Python kernels cannot start (the pool falls back to exec)."""


class KernelUnavailable(GatewayError):
    """No kernel can start with this installation: its kernelspec or startup files are missing,
    the kernel interpreter lacks ipykernel, or every start fails. Raised at start-up, with the fix.
    """

    code = "kernel_unavailable"


class SandboxUnavailable(GatewayError):
    """The sandbox was requested but cannot work on this host (e.g. bubblewrap is missing)."""

    code = "sandbox_unavailable"


class FileRejected(GatewayError):
    """An upload or stored file was refused: bad name, too large, or over quota."""

    code = "file_rejected"


class SettingsError(GatewayError, ValueError):
    """Settings that cannot mean anything: a value of the wrong type, outside its choices or
    range, or contradicting another setting. Raised when settings are made (at start-up; a
    reload that meets one keeps the running settings), with every problem at once, each as
    ``(setting, message)``: the message names the value given (never a secret) and what is
    allowed. Also a ``ValueError``, which is what bad settings raised before it existed."""

    code = "bad_settings"

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        lines = [f"{name}: {message}" for name, message in self.problems]
        if len(lines) == 1:
            super().__init__(f"invalid settings: {lines[0]}")
        else:
            super().__init__("invalid settings:" + "".join(f"\n  {line}" for line in lines))
