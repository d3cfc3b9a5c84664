"""Sizes and durations as people write them (gateway/units.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.units import (
    DURATION_UNITS,
    SIZE_UNITS,
    describe_size,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("4096", 4096), ("1_000_000", 10**6), ("512MiB", 512 * 2**20), ("1GiB", 2**30),
    ("10MB", 10 * 10**6), ("1kB", 1000), ("1KiB", 1024), ("2 TiB", 2 * 2**40), ("3TB", 3 * 10**12),
    ("7B", 7), (" 64mib ", 64 * 2**20),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", [
    "12 parsecs", "1.5GiB", "-5", "-1MiB", "", "MiB", "1e9", "0x10", "5 M", "5K", "inf", "nan",
    "1 GiB 2", "١٢",
])
def test_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="is not a size: bytes, or a whole number with B, kB"):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("90", 90.0), ("2.5", 2.5), ("90s", 90.0), ("15m", 900.0), ("2h", 7200.0),
    ("30d", 30 * 86400.0), ("250ms", 0.25), ("1.5h", 5400.0), (" 10 S ", 10.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", [
    "-5s", "-5", "12 parsecs", "", "s", "1h30m", "inf", "nan", "1e3", "5 minutes", ".5s",
])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match=r"is not a duration: seconds, or a number with ms, s"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from(sorted(SIZE_UNITS)),
       st.sampled_from(["", " "]), st.booleans())
def test_any_whole_size_with_any_unit(number, unit, space, upper):
    text = f"{number}{space}{unit.upper() if upper else unit}"
    assert parse_size(text) == number * SIZE_UNITS[unit]


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(DURATION_UNITS)))
def test_any_whole_duration_with_any_unit(number, unit):
    assert parse_duration(f"{number}{unit}") == number * DURATION_UNITS[unit]


def test_sizes_are_described_in_the_largest_exact_unit():
    assert describe_size(5 * 2**30) == "5 GiB"
    assert describe_size(1536 * 2**20) == "1536 MiB"
    assert describe_size(3_000_000) == "3000000 bytes"
    assert describe_size(0) == "0 bytes"
