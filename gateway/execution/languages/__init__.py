"""Languages: which a thread can run (``registry``) and whether this host can (``probe``)."""

from .probe import unavailable_reason
from .registry import BASH, DEFAULT, LANGUAGES, PYTHON, Language, find

__all__ = ["BASH", "DEFAULT", "LANGUAGES", "PYTHON", "Language", "find", "unavailable_reason"]
