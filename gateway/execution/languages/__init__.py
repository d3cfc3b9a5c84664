"""Languages: which a thread can run (``registry``) and whether this host can (``probe``)."""

from ...wire.languages import BASH, DEFAULT, LANGUAGES, PYTHON, Language, find
from .probe import unavailable_reason

__all__ = ["BASH", "DEFAULT", "LANGUAGES", "PYTHON", "Language", "find", "unavailable_reason"]
