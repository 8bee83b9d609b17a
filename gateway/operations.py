"""What each responder declares about itself: one `Operation` per `on_get`/`on_post`/....

The `@operation(...)` decorator attaches it. The guard middleware reads it to
authenticate, rate-limit and validate the request before the responder runs; the OpenAPI
document is generated from it. A route therefore cannot be served with rules other than
the ones it documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.types import RejectCode
from gateway.envelope import invalid_field

PUBLIC, TRADER, ADMIN = "public", "trader", "admin"


@dataclass(frozen=True, slots=True)
class Param:
    """One query-string parameter: how it is parsed and how it is documented."""

    name: str
    parse: Callable[[str], Any]
    schema: dict[str, Any]
    description: str
    default: Any = None
    required: bool = False


def integer_param(name: str, low: int, high: int, default: int | None, description: str) -> Param:
    digits = len(str(high))

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit() and len(text) <= digits) or not low <= int(text) <= high:
            raise invalid_field(name, f"{name} must be an integer in {low}..{high}")
        return int(text)

    schema = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return Param(name, parse, schema, description, default)


def choice_param(name: str, choices: tuple[str, ...], default: str | None, description: str) -> Param:
    def parse(text: str) -> str:
        if text not in choices:
            raise invalid_field(name, f"{name} must be one of {', '.join(choices)}")
        return text

    schema: dict[str, Any] = {"type": "string", "enum": list(choices)}
    if default is not None:
        schema["default"] = default
    return Param(name, parse, schema, description, default)


def pattern_param(name: str, pattern: re.Pattern[str], max_length: int, description: str, example: str,
                  message: str) -> Param:
    def parse(text: str) -> str:
        if len(text) > max_length or not pattern.fullmatch(text):
            raise invalid_field(name, f"{name} {message}")
        return text

    schema = {"type": "string", "pattern": f"^{pattern.pattern}$", "maxLength": max_length, "example": example}
    return Param(name, parse, schema, description)


@dataclass(frozen=True, slots=True)
class Operation:
    """Everything the gateway enforces and documents about one method of one route."""

    summary: str
    auth: str = PUBLIC
    # Rate-limit weight: a number, or a function of the parsed query.
    weight: int | Callable[[Mapping[str, Any]], int] = 1
    query: tuple[Param, ...] = ()
    body: Any = None  # a schemas.Body
    response: dict[str, Any] | None = None  # JSON schema of `data` (or the whole body when not enveloped)
    status: int = 200
    errors: tuple[RejectCode, ...] = ()
    matcher: bool = False  # talks to the matcher: may answer 503/504
    rate_limited: bool = True
    envelope: bool = True
    content_type: str = "application/json"
    description: str = ""
    tags: tuple[str, ...] = ()
    documented: bool = True
    weight_note: str = ""
    params_by_name: dict[str, Param] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.params_by_name.update({param.name: param for param in self.query})

    def weight_for(self, query: Mapping[str, Any]) -> int:
        return self.weight(query) if callable(self.weight) else self.weight

    def parse_query(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Return the declared parameters, parsed, with defaults; refuse anything else."""
        parsed = {}
        known = self.params_by_name
        for name, value in params.items():
            param = known.get(name)
            if param is None:
                raise invalid_field(name[:40], f"unknown query parameter {name[:40]}")
            if not isinstance(value, str):
                raise invalid_field(name, f"{name} is given more than once")
            parsed[name] = param.parse(value)
        for param in self.query:
            if param.name not in parsed:
                if param.required:
                    raise invalid_field(param.name, f"{param.name} is required")
                parsed[param.name] = param.default
        return parsed

    def possible_errors(self) -> list[RejectCode]:
        """Return every code this operation can answer with, for the OpenAPI document."""
        codes = [RejectCode.INVALID_JSON, RejectCode.INVALID_FIELD, RejectCode.BODY_TOO_LARGE]
        if self.auth == TRADER:
            codes += [RejectCode.MISSING_AUTHENTICATION, RejectCode.INVALID_API_KEY, RejectCode.INVALID_SIGNATURE,
                      RejectCode.TIMESTAMP_OUT_OF_WINDOW, RejectCode.STORE_UNAVAILABLE]
        elif self.auth == ADMIN:
            codes += [RejectCode.MISSING_AUTHENTICATION, RejectCode.FORBIDDEN]
        if self.rate_limited:
            codes.append(RejectCode.RATE_LIMITED)
        if self.matcher:
            codes += [RejectCode.MATCHER_UNAVAILABLE, RejectCode.MATCHER_TIMEOUT]
        codes += [code for code in self.errors if code not in codes]
        return codes


def operation(**declaration: Any) -> Callable[[Callable], Callable]:
    """Declare a responder's `Operation`; see the class for the fields."""
    declared = Operation(**declaration)

    def attach(responder: Callable) -> Callable:
        responder.operation = declared
        return responder

    return attach


def operation_of(resource: object, method: str) -> Operation | None:
    responder = getattr(resource, "on_" + method.lower(), None)
    return getattr(responder, "operation", None)
