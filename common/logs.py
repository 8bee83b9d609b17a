"""Structured logging: one JSON object per line on stderr.

Every line carries `ts` (ISO-8601 UTC with milliseconds), `level`, `process` (the zmx
process name given to `setup_logging`), `pid`, `logger` and `msg`, then whatever the caller
passed as `extra={...}`, then `exc` (the formatted traceback) when there is one. Extra
fields never overwrite the standard ones. Values orjson cannot encode are written with
`str()`, so a log call never fails because of what it logs.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format each record as one line of JSON."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON object without a trailing newline."""
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "process": self.process,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()

    def _timestamp(self, record: logging.LogRecord) -> str:
        # Formatting the date is the slow part; it changes once a second.
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"


def setup_logging(level: str, process: str, *, stream: TextIO | None = None) -> None:
    """Make the root logger write JSON lines for `process` to stderr (or `stream`)."""
    try:
        numeric_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
        existing.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    logging.captureWarnings(True)
