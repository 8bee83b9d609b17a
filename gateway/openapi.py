"""The OpenAPI 3 document, generated from the routes and their `Operation` declarations.

Every documented responder of every registered route becomes an operation with its
parameters, request body (from its `schemas.Body`), success response (inside the
envelope when the route uses it) and one error response per HTTP status it can answer,
listing the reject codes behind that status. Nothing here is written by hand per route.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from common.types import HTTP_STATUS
from gateway.operations import ADMIN, TRADER, operation_of
from gateway.schemas import COMPONENTS, ref

OPENAPI_VERSION = "3.0.3"
METHODS = ("get", "post", "put", "patch", "delete")
_PATH_FIELD = re.compile(r"{([a-z_]+)}")
_PATH_PARAMETERS = {
    "pair": ({"type": "string", "example": "BTC-USDT", "maxLength": 25}, "market, written BASE-QUOTE"),
    "order_id": ({"type": "string", "pattern": "^[0-9]{1,19}$", "example": "1025"}, "order id"),
    "client_order_id": ({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,36}$", "example": "my-order-1"},
                        "client_order_id of an open order"),
    "trader_id": ({"type": "string", "pattern": "^[0-9]{1,19}$", "example": "1"}, "trader id"),
}
_STATUS_DESCRIPTIONS = {200: "OK", 201: "Created", 400: "Bad request", 401: "Not authenticated", 403: "Forbidden",
                        404: "Not found", 405: "Method not allowed", 409: "Conflict", 413: "Body too large",
                        422: "Refused by the matcher", 429: "Rate limited", 500: "Internal error",
                        503: "Unavailable", 504: "Matcher timeout"}
_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "weight allowed per window", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "weight left in this window", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "seconds until the window resets", "schema": {"type": "integer"}},
}
_SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "zmx_ + 32 hex characters, from an admin"},
    "Timestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp",
                  "description": "current time in integer milliseconds"},
    "Signature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                  "description": "hex HMAC-SHA256(api_secret, timestamp + METHOD + path-with-query + body)"},
    "AdminToken": {"type": "http", "scheme": "bearer", "description": "the admin token"},
}


def build_document(routes: list[tuple[str, object]], title: str = "zmx REST API", version: str = "1") -> dict[str, Any]:
    """Return the OpenAPI document for `routes` ((template, resource) pairs)."""
    paths: dict[str, Any] = {}
    bodies: dict[str, Any] = {}
    for template, resource in routes:
        item: dict[str, Any] = {}
        for method in METHODS:
            declared = operation_of(resource, method)
            if declared is None or not declared.documented:
                continue
            item[method] = _operation(template, method, declared, bodies)
        if item:
            fields = _PATH_FIELD.findall(template)
            if fields:
                item["parameters"] = [_path_parameter(name) for name in fields]
            paths[template] = item
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version,
                 "description": "Envelope: {success, data, timestamp}; errors {success: false, error: {code, "
                                "message, details}, timestamp}. Prices and quantities are decimal strings. "
                                "See docs/rest-api.md."},
        "paths": paths,
        "components": {"schemas": {**COMPONENTS, **bodies}, "securitySchemes": _SECURITY_SCHEMES},
    }


def _path_parameter(name: str) -> dict[str, Any]:
    schema, description = _PATH_PARAMETERS.get(name, ({"type": "string"}, name))
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _operation(template: str, method: str, declared, bodies: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, template),
        "summary": declared.summary,
        "tags": list(declared.tags),
    }
    description = declared.description
    if declared.rate_limited and declared.auth != ADMIN:
        weight = declared.weight_note or str(declared.weight)
        description = (description + "\n\n" if description else "") + f"Rate-limit weight: {weight}."
        operation["x-rate-limit-weight"] = weight
    if description:
        operation["description"] = description
    if declared.auth == TRADER:
        operation["security"] = [{"ApiKey": [], "Timestamp": [], "Signature": []}]
    elif declared.auth == ADMIN:
        operation["security"] = [{"AdminToken": []}]
    else:
        operation["security"] = []
    parameters = [{"name": param.name, "in": "query", "required": param.required, "schema": param.schema,
                   "description": param.description} for param in declared.query]
    if parameters:
        operation["parameters"] = parameters
    if declared.body is not None:
        bodies[declared.body.name] = declared.body.json_schema()
        operation["requestBody"] = {
            "required": bool(declared.body.required),
            "content": {"application/json": {"schema": ref(declared.body.name)}},
        }
    responses: dict[str, Any] = {}
    success_schema = declared.response or {}
    if declared.envelope:
        success_schema = {"type": "object", "required": ["success", "data", "timestamp"], "properties": {
            "success": {"type": "boolean", "enum": [True]}, "data": success_schema,
            "timestamp": {"type": "integer"}}}
    success = {"description": _STATUS_DESCRIPTIONS[declared.status],
               "content": {declared.content_type: {"schema": success_schema}}}
    if declared.rate_limited:
        success["headers"] = _RATE_LIMIT_HEADERS
    responses[str(declared.status)] = success
    if not declared.envelope and declared.content_type == "application/json":
        # /health answers 503 with the same body when a matcher is unreachable.
        responses["503"] = {"description": "a matcher shard is unreachable",
                            "content": {"application/json": {"schema": declared.response}}}
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in declared.possible_errors():
        by_status[HTTP_STATUS[code]].append(code.name)
    for status in sorted(by_status):
        if str(status) in responses:
            continue
        codes = by_status[status]
        schema = {"allOf": [ref("Error"), {"type": "object", "properties": {"error": {
            "type": "object", "properties": {"code": {"type": "string", "enum": codes}}}}}]}
        response = {"description": f"{_STATUS_DESCRIPTIONS.get(status, status)}: {', '.join(codes)}",
                    "content": {"application/json": {"schema": schema}}}
        if status == 429:
            response["headers"] = {**_RATE_LIMIT_HEADERS,
                                   "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
        responses[str(status)] = response
    operation["responses"] = responses
    return operation


def _operation_id(method: str, template: str) -> str:
    words = [part for part in re.split(r"[/{}_-]+", template) if part and part not in ("api", "v1")]
    return method + "".join(word[:1].upper() + word[1:] for word in words)
