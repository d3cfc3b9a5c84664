"""The declared constraints of a settings dataclass and the check that reads them
(gateway/constraints.py), on a small dataclass of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.constraints import DURATION, SIZE, Rule, normalize, problems, setting


@dataclass
class Toy:
    port: int = setting(80, minimum=0, maximum=65535, special=((-1, "off"),))
    mode: str = setting("a", choices=("a", "b"))
    level: str = setting("INFO", choices=("INFO", "DEBUG"), ignore_case=True)
    limit: int = setting(1024, unit=SIZE, above=0)
    wait: float = setting(1.0, unit=DURATION, minimum=0)
    count: int = setting(1, minimum=1)
    password: str = setting("", secret=True, check=lambda v: None if len(v) != 3 else "is weak")
    flag: bool = False
    names: tuple[str, ...] = ()
    where: Path = Path("/")
    table: dict[str, str] = setting(factory=dict)
    low: int = 1
    high: int = 2


ORDERED = Rule(("low", "high"), lambda t: t.low <= t.high, lambda t: f"{t.low} is above high")


def test_defaults_have_no_problem():
    assert problems(Toy(), [ORDERED]) == []


def test_each_kind_of_problem_names_the_value_and_what_is_allowed():
    toy = Toy(port=70000, mode="c", level="loud", limit=0, wait=-1.0, count=0, flag="yes",
              names=("a", 1), where="/x", table={"k": 2})
    assert problems(toy) == [
        ("port", "70000 is out of range: -1 (off) or 0..65535"),
        ("mode", "'c' is not one of 'a', 'b'"),
        ("level", "'loud' is not one of 'INFO', 'DEBUG'"),
        ("limit", "0 is out of range: more than 0 bytes"),
        ("wait", "-1.0 is out of range: at least 0 seconds"),
        ("count", "0 is out of range: at least 1"),
        ("flag", "'yes' is not true or false"),
        ("names", "('a', 1) is not a list of text"),
        ("where", "'/x' is not a path"),
        ("table", "{'k': 2} is not a table of text"),
    ]


def test_special_values_and_case():
    assert problems(Toy(port=-1, level="debug")) == []
    assert problems(Toy(port=-2)) == [("port", "-2 is out of range: -1 (off) or 0..65535")]


def test_types_come_from_the_annotations():
    assert problems(Toy(port=True, limit=1.5, wait="15m", count="3")) == [
        ("port", "True is not a whole number"),
        ("limit", "1.5 is not a whole number of bytes"),
        ("wait", "'15m' is not a number of seconds"),
        ("count", "'3' is not a whole number"),
    ]
    assert problems(Toy(wait=float("inf")))[0] == ("wait", "inf is not a finite number")
    assert problems(Toy(wait=float("nan")))[0] == ("wait", "nan is not a finite number")


def test_a_secret_is_never_repeated():
    found = problems(Toy(password="abc")) + problems(Toy(password=12345))
    assert found == [("password", "the value given is weak"),
                     ("password", "the value given is not text")]
    assert "abc" not in str(found) and "12345" not in str(found)


def test_rules_are_reported_under_their_first_setting_unless_a_field_is_broken():
    assert problems(Toy(low=3), [ORDERED]) == [("low", "3 is above high")]
    # high is not a number: the rule cannot be judged, and the field's own problem is enough.
    assert problems(Toy(low=3, high="x"), [ORDERED]) == [("high", "'x' is not a whole number")]


def test_normalize_widens_only_the_unambiguous():
    toy = Toy(wait=2, names=["a"], where="/srv", count=True)
    normalize(toy)
    assert (toy.wait, toy.names, toy.where) == (2.0, ("a",), Path("/srv"))
    assert type(toy.wait) is float
    assert toy.count is True  # a bool is not widened to a number: it stays a problem
    assert problems(toy) == [("count", "True is not a whole number")]
