"""The languages a thread can run (pure: names, kernelspecs, fences, warm-up cells).

A thread picks its language with its first ``execute`` or ``code_delta`` (``"language"``,
default ``python``). Each language is a kernelspec directory under ``Settings.kernels_dir``
launched through the same sandbox provisioner, a fence tag for its hot code, and a throwaway
warm-up cell. Whether this installation can run it is ``probe.py``'s business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

    @property
    def fence_open(self) -> str:
        return f"```{self.fence}\n"


# Python's warm-up: display() rather than a result, which would land in ``_`` and ``Out``;
# run with store_history=False it shows in neither ``In`` nor the execution count.
PYTHON = Language("python", "python3", "python", "print(end=' ')\ndisplay(2)", "ipykernel")
BASH = Language("bash", "bash", "bash", "true", "bash_kernel", "bash")
LANGUAGES: dict[str, Language] = {language.name: language for language in (PYTHON, BASH)}


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
