"""Tests for common.logs: one JSON object per line with the standard and extra fields."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timezone

import orjson
import pytest

from common.logs import setup_logging

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def lines_of(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [orjson.loads(line) for line in text.splitlines()]


def test_each_record_is_one_json_line_with_the_standard_fields() -> None:
    stream = io.StringIO()
    setup_logging("info", "matcher-0", stream=stream)

    before = datetime.now(timezone.utc).replace(microsecond=0)
    logging.getLogger("zmx.test").info("placed %d orders", 3)
    logging.getLogger("zmx.test").warning("second line")

    first, second = lines_of(stream)
    assert list(first) == ["ts", "level", "process", "pid", "logger", "msg"]
    assert first["level"] == "info"
    assert first["process"] == "matcher-0"
    assert isinstance(first["pid"], int)
    assert first["logger"] == "zmx.test"
    assert first["msg"] == "placed 3 orders"
    assert TIMESTAMP.fullmatch(str(first["ts"]))
    logged_at = datetime.strptime(str(first["ts"]), "%Y-%m-%dT%H:%M:%S.%fZ")
    assert logged_at.replace(tzinfo=timezone.utc) >= before
    assert second["level"] == "warning"
    assert second["msg"] == "second line"


def test_extra_fields_are_included_and_cannot_replace_standard_ones() -> None:
    stream = io.StringIO()
    setup_logging("info", "gateway", stream=stream)

    logging.getLogger("zmx.test").info(
        "order accepted",
        extra={"order_id": 42, "pair": "BTC-USDT", "level": "forged", "tags": ["a", "b"]},
    )

    (line,) = lines_of(stream)
    assert line["order_id"] == 42
    assert line["pair"] == "BTC-USDT"
    assert line["tags"] == ["a", "b"]
    assert line["level"] == "info"


def test_values_json_cannot_encode_are_written_as_strings() -> None:
    stream = io.StringIO()
    setup_logging("info", "feed", stream=stream)

    logging.getLogger("zmx.test").info("odd value", extra={"value": {1, 2} - {2}})

    (line,) = lines_of(stream)
    assert line["value"] == "{1}"


def test_multiline_message_stays_on_one_line() -> None:
    stream = io.StringIO()
    setup_logging("info", "feed", stream=stream)

    logging.getLogger("zmx.test").info("first\nsecond")

    (line,) = lines_of(stream)
    assert line["msg"] == "first\nsecond"


def test_exception_is_a_string_field() -> None:
    stream = io.StringIO()
    setup_logging("info", "matcher-0", stream=stream)

    try:
        1 / 0
    except ZeroDivisionError:
        logging.getLogger("zmx.test").exception("command failed")

    (line,) = lines_of(stream)
    assert line["level"] == "error"
    assert line["msg"] == "command failed"
    assert isinstance(line["exc"], str)
    assert "Traceback" in line["exc"]
    assert "ZeroDivisionError: division by zero" in line["exc"]


def test_records_below_the_level_are_dropped() -> None:
    stream = io.StringIO()
    setup_logging("WARNING", "matcher-0", stream=stream)

    logging.getLogger("zmx.test").info("quiet")
    logging.getLogger("zmx.test").error("loud")

    assert [line["msg"] for line in lines_of(stream)] == ["loud"]


def test_setting_up_twice_does_not_duplicate_lines() -> None:
    stream = io.StringIO()
    setup_logging("info", "first", stream=io.StringIO())
    setup_logging("info", "second", stream=stream)

    logging.getLogger("zmx.test").info("once")

    (line,) = lines_of(stream)
    assert line["process"] == "second"


def test_writes_to_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "supervisor")

    logging.getLogger("zmx.test").info("to stderr")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert orjson.loads(captured.err)["msg"] == "to stderr"


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level 'chatty'"):
        setup_logging("chatty", "matcher-0")
