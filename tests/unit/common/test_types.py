"""Exact decimal <-> step conversion: refuses everything inexact, never rounds."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.types import HTTP_STATUS, InexactValue, RejectCode, Step, parse_decimal


@pytest.mark.parametrize(
    ("step", "text", "count"),
    [
        ("0.01", "42150.50", 4215050),
        ("0.01", "42150.5", 4215050),
        ("0.01", "42150.500000", 4215050),
        ("0.01", "0.01", 1),
        ("0.05", "1.15", 23),
        ("5", "15", 3),
        ("0.001", "1e-3", 1),
        ("0.001", "1.5E2", 150000),
        ("1", "007", 7),
        ("0.010", "0.02", 2),
    ],
)
def test_parse_exact_multiples(step, text, count):
    assert Step(step).parse(text) == count


@pytest.mark.parametrize(
    ("step", "text"),
    [
        ("0.01", "42150.505"),
        ("0.05", "1.12"),
        ("5", "7"),
        ("0.01", "-1.00"),
        ("0.01", "-0"),
        ("0.01", "+1.00"),
        ("0.01", "NaN"),
        ("0.01", "nan"),
        ("0.01", "Infinity"),
        ("0.01", "inf"),
        ("0.01", "1e999999999"),
        ("0.01", "1e-999999999"),
        ("0.01", ""),
        ("0.01", " 1.00"),
        ("0.01", "1,00"),
        ("0.01", "0x10"),
        ("0.01", "1" * 30),
        ("0.01", "1." + "0" * 30 + "1"),
        ("0.01", "١٢"),
    ],
)
def test_parse_refuses_inexact_or_invalid(step, text):
    with pytest.raises(InexactValue):
        Step(step).parse(text)


@pytest.mark.parametrize("value", [1.5, 2, None, True, ["1"], {"v": "1"}, b"1.00"])
def test_parse_refuses_non_strings(value):
    with pytest.raises(InexactValue, match="decimal string"):
        Step("0.01").parse(value)


def test_parse_positive_refuses_zero():
    with pytest.raises(InexactValue, match="greater than zero"):
        Step("0.01").parse_positive("0.00")


@pytest.mark.parametrize(
    ("step", "count", "text"),
    [("0.01", 4215050, "42150.50"), ("0.01", 1, "0.01"), ("0.001", 0, "0.000"), ("5", 3, "15"),
     ("0.05", 23, "1.15"), ("0.00000001", -150, "-0.00000150")],
)
def test_format_has_exactly_the_step_decimals(step, count, text):
    assert Step(step).format(count) == text


def test_step_normalises_trailing_zeros():
    assert Step("0.010") == Step("0.01")
    assert Step("0.010").text == "0.01"
    assert Step.from_decimals(8).text == "0.00000001"
    assert Step.from_decimals(0).text == "1"


@pytest.mark.parametrize("text", ["0", "0.000", "-0.01", "abc", "NaN"])
def test_step_itself_must_be_positive_and_finite(text):
    with pytest.raises(InexactValue):
        Step(text)


def test_units_per_refuses_a_coarser_unit():
    assert Step("0.001").units_per(Step.from_decimals(8)) == 100_000
    with pytest.raises(InexactValue):
        Step("0.001").units_per(Step.from_decimals(2))


@given(
    step_digits=st.integers(1, 99),
    step_decimals=st.integers(0, 10),
    count=st.integers(0, 10**15),
)
def test_format_then_parse_round_trips(step_digits, step_decimals, count):
    step = Step(str(Decimal(step_digits).scaleb(-step_decimals)))
    assert step.parse(step.format(count)) == count


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=0, max_value=10**12, places=6))
def test_parse_decimal_matches_decimal(value):
    digits, exponent = parse_decimal(str(value))
    assert Decimal(digits).scaleb(-exponent) == value


def test_every_reject_code_has_an_http_status_and_a_subsystem_range():
    for code in RejectCode:
        assert code in HTTP_STATUS
        assert 1000 <= code < 6000
    assert HTTP_STATUS[RejectCode.INSUFFICIENT_BALANCE] == 422
    assert HTTP_STATUS[RejectCode.DUPLICATE_CLIENT_ORDER_ID] == 409
    assert HTTP_STATUS[RejectCode.MATCHER_TIMEOUT] == 504


def test_the_error_table_in_the_docs_lists_every_code():
    from pathlib import Path

    table = (Path(__file__).resolve().parents[3] / "docs" / "errors.md").read_text()
    for code in RejectCode:
        assert f"| `{code.name}` | {int(code)} | {HTTP_STATUS[code]} |" in table


def test_cached_conversions_agree_with_the_plain_ones_and_stay_bounded():
    from common.types import STEP_CACHE_SIZE

    step = Step("0.01")
    for count in range(STEP_CACHE_SIZE + 10):
        assert step.format_cached(count) == step.format(count)
    assert step.parse_positive_cached("42150.50") == 4215050 == step.parse_positive_cached("42150.50")
    with pytest.raises(InexactValue):
        step.parse_positive_cached("42150.505")
    with pytest.raises(InexactValue):
        step.parse_positive_cached("0.00")
    assert len(step._formatted) <= STEP_CACHE_SIZE
