"""The languages a thread can run (pure: names, kernelspecs, fences, warm-up cells).

A thread picks its language with its first ``execute`` or ``code_delta`` (``"language"``,
default ``python``). Each language is a kernelspec directory under ``Settings.kernels_dir``
launched through the same sandbox provisioner, a fence tag for its hot code, and a throwaway
warm-up cell. Whether this installation can run it is ``probe.py``'s business.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UnknownLanguage

DEFAULT = "python"
_NAME = re.compile(r"[a-z][a-z0-9_+-]{0,31}")


@dataclass(frozen=True)
class Language:
    """One language: what clients call it and how its kernels start."""

    name: str  # what clients send ("python", "bash")
    kernel_name: str  # its kernelspec directory under Settings.kernels_dir
    fence: str  # the hot-code fence's info string: "```bash\n"
    warm_up: str  # a throwaway first cell that pays for the kernel's cold code paths
    module: str | None = None  # a module the kernel interpreter must import (its kernel)
    program: str | None = None  # a program the kernel runs (looked up on the host's PATH)
    # A command that must succeed for the runtime to count as installed, and what is missing
    # when it fails (e.g. R without IRkernel).
    check: tuple[str, ...] | None = None
    check_hint: str = ""
    # The kernel speaks ZeroMQ over TCP only: it runs behind tcp_bridge.py (see there).
    tcp_bridge: bool = False
    # Seconds a cell's output is still taken after its ``idle``: Deno 2.9's kernel sometimes
    # publishes a cell's ``execute_result`` just after ``idle`` (about 1 cell in 8 seen here).
    late_output_grace: float = 0.0
    # The kernel ignores interrupt_request but stops on SIGINT (IRkernel): the gateway, from
    # outside the sandbox, signals the top-most ``program`` process in the kernel's cgroup.
    interrupt_by_signal: bool = False
    # Hidden cells around one execution's ``env`` (names validated by the protocol): one sets
    # the variables and remembers what they were, the other puts that back.
    set_env: Callable[[dict[str, str]], str] = field(default=lambda env: "", repr=False)
    restore_env: Callable[[list[str]], str] = field(default=lambda names: "", repr=False)

    @property
    def fence_open(self) -> str:
        return f"```{self.fence}\n"


def _python_set_env(env: dict[str, str]) -> str:
    # Statements whose value is None (nothing displayed); nothing named in the user's namespace.
    return ("__import__('os').__dict__.update(_gateway_saved_env={name: "
            f"__import__('os').environ.get(name) for name in {sorted(env)!r}}})\n"
            f"__import__('os').environ.update({env!r})\n")


def _python_restore_env(names: list[str]) -> str:
    return ("[__import__('os').environ.pop(name, None) if old is None else "
            "__import__('os').environ.__setitem__(name, old) for name, old in "
            "__import__('os').__dict__.pop('_gateway_saved_env', {}).items()].clear()\n")


def _bash_set_env(env: dict[str, str]) -> str:
    names = " ".join(sorted(env))
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in sorted(env.items()))
    return (f"__gateway_saved_env=$(declare -p {names} 2>/dev/null)\n"
            f"export {exports}\n")


def _bash_restore_env(names: list[str]) -> str:
    return (f"unset {' '.join(sorted(names))}\n"
            'eval "$__gateway_saved_env"; unset __gateway_saved_env\n')


def _deno_set_env(env: dict[str, str]) -> str:
    # JSON is a JavaScript literal; the cell's value is undefined (nothing displayed).
    return (f"globalThis.__gatewaySavedEnv = Object.fromEntries({json.dumps(sorted(env))}"
            ".map((name) => [name, Deno.env.get(name)]));\n"
            f"for (const [name, value] of Object.entries({json.dumps(env)})) "
            "Deno.env.set(name, value);\n")


def _deno_restore_env(names: list[str]) -> str:
    return ("for (const [name, old] of Object.entries(globalThis.__gatewaySavedEnv ?? {})) "
            "old === undefined ? Deno.env.delete(name) : Deno.env.set(name, old);\n"
            "delete globalThis.__gatewaySavedEnv;\n")


def _r_string(value: str) -> str:
    # R's raw string literal: nothing inside is an escape; the delimiter cannot occur in it.
    dashes = "-" * (max((len(run) for run in re.findall(r"-+", value)), default=0) + 1)
    return f'r"{dashes}({value}){dashes}"'


def _r_set_env(env: dict[str, str]) -> str:
    names = ", ".join(_r_string(name) for name in sorted(env))
    values = ", ".join(f"{_r_string(name)} = {_r_string(value)}"
                       for name, value in sorted(env.items()))
    return (f"assign('.gateway_saved_env', Sys.getenv(c({names}), unset = NA, names = TRUE), "
            "envir = globalenv())\n"
            f"invisible(do.call(Sys.setenv, list({values})))\n")


def _r_restore_env(names: list[str]) -> str:
    return ("local({ old <- get('.gateway_saved_env', envir = globalenv()); "
            "for (name in names(old)) if (is.na(old[[name]])) Sys.unsetenv(name) else "
            "do.call(Sys.setenv, setNames(list(old[[name]]), name)); "
            "rm('.gateway_saved_env', envir = globalenv()) })\n")


# Python's warm-up: display() rather than a result, which would land in ``_`` and ``Out``;
# run with store_history=False it shows in neither ``In`` nor the execution count.
PYTHON = Language("python", "python3", "python", "print(end=' ')\ndisplay(2)", "ipykernel",
                  set_env=_python_set_env, restore_env=_python_restore_env)
BASH = Language("bash", "bash", "bash", "true", "bash_kernel", "bash",
                set_env=_bash_set_env, restore_env=_bash_restore_env)
# Deno's kernel runs both (TypeScript is a superset; a thread's name picks its pool and fence).
# Deno's warm-up loads its timers too: they load lazily, and an interrupt that lands while they
# load leaves them half-initialized ("Uncaught null" from every setTimeout after).
DENO_WARM_UP = 'console.log(""); await new Promise((done) => setTimeout(done, 0));'
JAVASCRIPT = Language("javascript", "deno", "javascript", DENO_WARM_UP, program="deno",
                      tcp_bridge=True, late_output_grace=0.03,
                      set_env=_deno_set_env, restore_env=_deno_restore_env)
TYPESCRIPT = Language("typescript", "deno", "typescript", DENO_WARM_UP, program="deno",
                      tcp_bridge=True, late_output_grace=0.03,
                      set_env=_deno_set_env, restore_env=_deno_restore_env)
# IRkernel speaks ipc itself (its socket names match jupyter_client's). It does not answer an
# interrupt_request, but R stops the running cell on SIGINT, which the gateway sends itself.
R = Language("r", "ir", "r", "invisible(NULL)", program="R", interrupt_by_signal=True,
             check=("Rscript", "-e",
                    "quit(status = !requireNamespace('IRkernel', quietly = TRUE))"),
             check_hint="the R package IRkernel is not installed (Debian: r-cran-irkernel)",
             set_env=_r_set_env, restore_env=_r_restore_env)
LANGUAGES: dict[str, Language] = {language.name: language
                                  for language in (PYTHON, BASH, JAVASCRIPT, TYPESCRIPT, R)}


def find(name: object) -> Language:
    """The language called ``name``; ``UnknownLanguage`` (naming the known ones) otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UnknownLanguage(f"language: expected a name such as {DEFAULT!r}, got {name!r:.40}")
    try:
        return LANGUAGES[name]
    except KeyError:
        known = ", ".join(LANGUAGES)
        raise UnknownLanguage(f"language {name!r} is not supported by this gateway "
                              f"(supported: {known})") from None
