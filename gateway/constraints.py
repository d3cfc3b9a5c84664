"""What each setting accepts, declared beside it, and the pure check that finds every value that
breaks a declaration.

A field of a settings dataclass says what it takes with ``setting(default, ...)``: its unit (a
size or a duration, which text may then write as ``512MiB`` or ``15m``), its choices or its
range. Its type comes from its annotation. Constraints over several fields are ``Rule``\\ s.
``problems`` returns every problem at once, as ``(setting, message)`` pairs; nothing here does
I/O or raises.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIZE = "size"  # a whole number of bytes; text may say 512MiB or 10MB (gateway/units.py)
DURATION = "duration"  # seconds; text may say 90s, 15m or 2h

Problem = tuple[str, str]  # (setting, what is wrong with its value and what is allowed)


@dataclass(frozen=True)
class Constraint:
    """What one setting accepts beyond its type. ``special`` values are allowed outside the
    range and say what they mean (``-1``: off); ``check`` returns what is wrong, or None."""

    unit: str | None = None
    choices: tuple[str, ...] = ()
    ignore_case: bool = False
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    special: tuple[tuple[float, str], ...] = ()
    check: Callable[[Any], str | None] | None = None  # e.g. "is not a s3:// URL"
    secret: bool = False  # never repeat the value in a message (it may hold a password)


@dataclass(frozen=True)
class Rule:
    """A constraint over several settings, reported under the first of them (and skipped when
    one of them already has a problem of its own)."""

    settings: tuple[str, ...]
    holds: Callable[[Any], bool]
    explain: Callable[[Any], str]


NO_CONSTRAINT = Constraint()


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
            **constraint: Any) -> Any:
    """A dataclass field with its ``Constraint`` in its metadata."""
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"constraint": Constraint(**constraint)})


def constraint_of(field: dataclasses.Field) -> Constraint:
    return field.metadata.get("constraint", NO_CONSTRAINT)


@functools.cache
def kinds(cls: type) -> dict[str, type]:
    """Each field's type without its parameters: ``dict[str, str]`` -> ``dict``."""
    return {name: typing.get_origin(hint) or hint
            for name, hint in typing.get_type_hints(cls).items()}


def normalize(instance: Any) -> None:
    """Widen what is unambiguous in place: an int where a float is expected, a list where a
    tuple is, text where a path is (as a TOML file or a caller may give them)."""
    # The arg-type ignores here and in problems(): a class is Hashable, mypy's type[Any] not.
    for name, kind in kinds(type(instance)).items():  # type: ignore[arg-type]
        value = getattr(instance, name)
        if kind is float and type(value) is int:
            setattr(instance, name, float(value))
        elif kind is tuple and isinstance(value, list):
            setattr(instance, name, tuple(value))
        elif kind is Path and isinstance(value, str):
            setattr(instance, name, Path(value))


def problems(instance: Any, rules: Iterable[Rule] = ()) -> list[Problem]:
    """Every field whose value breaks its type or constraint, then every rule that fails."""
    found: list[Problem] = []
    for field in dataclasses.fields(instance):
        rule = constraint_of(field)
        value = getattr(instance, field.name)
        message = type_problem(kinds(type(instance))[field.name], value, rule)  # type: ignore[arg-type]
        if message is None:
            message = value_problem(value, rule)
        if message is not None:
            found.append((field.name, message))
    broken = {name for name, _ in found}
    found += [(rule.settings[0], rule.explain(instance)) for rule in rules
              if broken.isdisjoint(rule.settings) and not rule.holds(instance)]
    return found


_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
               Path: "a path", tuple: "a list of text", dict: "a table of text"}
_UNIT_NAMES = {SIZE: "a whole number of bytes", DURATION: "a number of seconds"}


def type_problem(kind: type, value: Any, rule: Constraint = NO_CONSTRAINT) -> str | None:
    if kind is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        if fits and not math.isfinite(value):
            return f"{_shown(value, rule)} is not a finite number"
    elif kind is tuple:
        fits = isinstance(value, tuple) and all(isinstance(item, str) for item in value)
    elif kind is dict:
        fits = isinstance(value, dict) and all(
            isinstance(key, str) and isinstance(item, str) for key, item in value.items())
    else:
        fits = isinstance(value, kind)
    if fits:
        return None
    wanted = _UNIT_NAMES.get(rule.unit or "", _KIND_NAMES.get(kind, kind.__name__))
    return f"{_shown(value, rule)} is not {wanted}"


def value_problem(value: Any, rule: Constraint) -> str | None:
    if rule.choices:
        given = value.upper() if rule.ignore_case else value
        if given not in rule.choices:
            allowed = ", ".join(repr(choice) for choice in rule.choices)
            return f"{_shown(value, rule)} is not one of {allowed}"
    if rule.minimum is not None or rule.above is not None or rule.maximum is not None:
        if value not in (special for special, _ in rule.special) and not _in_range(value, rule):
            return f"{_shown(value, rule)} is out of range: {_range(rule)}"
    if rule.check is not None and (wrong := rule.check(value)) is not None:
        return f"{_shown(value, rule)} {wrong}"
    return None


def _in_range(value: float, rule: Constraint) -> bool:
    return ((rule.minimum is None or value >= rule.minimum)
            and (rule.above is None or value > rule.above)
            and (rule.maximum is None or value <= rule.maximum))


def _range(rule: Constraint) -> str:
    """What the range allows, in words: ``-1 (off) or 0..65535``, ``more than 0 seconds``."""
    unit = {SIZE: " bytes", DURATION: " seconds"}.get(rule.unit or "", "")
    if rule.minimum is not None and rule.maximum is not None:
        allowed = f"{_number(rule.minimum)}..{_number(rule.maximum)}{unit}"
    else:
        bounds = [f"at least {_number(rule.minimum)}" if rule.minimum is not None else "",
                  f"more than {_number(rule.above)}" if rule.above is not None else "",
                  f"at most {_number(rule.maximum)}" if rule.maximum is not None else ""]
        allowed = " and ".join(bound for bound in bounds if bound) + unit
    specials = [f"{_number(value)} ({meaning})" for value, meaning in rule.special]
    return " or ".join([*specials, allowed])


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _shown(value: Any, rule: Constraint) -> str:
    return "the value given" if rule.secret else repr(value)
