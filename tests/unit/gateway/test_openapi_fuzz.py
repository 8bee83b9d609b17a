"""Schemathesis over /openapi.json against the app: no input gives a 5xx, every answer is documented.

Each generated request (valid and invalid data, for every documented operation) is sent
with valid credentials, signed over the exact bytes sent, so the fuzz reaches past
authentication into validation and the matcher core. Every response must be a non-5xx
with a documented status, content type and body schema.
"""

from __future__ import annotations

from collections.abc import Iterator

from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NotSet
from werkzeug.test import Client

from tests.unit.gateway.conftest import ADMIN_TOKEN, Clock, Gateway, make_config
from tests.unit.gateway.fakes import FakeStore, InProcessEngine

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = make_config(Path(tmp_path_factory.mktemp("fuzz")), rate_limit_key_weight=10**9,
                         rate_limit_ip_weight=10**9)
    gateway = Gateway(config, InProcessEngine(), FakeStore(), Clock())
    gateway.create_market("BTC-USDT")
    gateway.fuzz_trader = gateway.trader("fuzzer", {"USDT": "1000000", "BTC": "1000"})
    gateway.trader("other", {"USDT": "1000000", "BTC": "1000"}).place(side="sell", price="100.00")
    yield gateway
    gateway.store.close()


def test_no_input_gives_a_server_error_and_every_answer_is_documented(fuzzed: Gateway) -> None:
    api_schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed.app)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            send_and_validate(fuzzed, case)

        try:
            check()
        except Exception as error:
            raise AssertionError(f"{operation.method.upper()} {operation.path}: {error}") from error


def send_and_validate(fuzzed: Gateway, case) -> None:
    """Send the case signed with valid credentials; validate the response against the document."""
    trader = fuzzed.fuzz_trader
    fuzzed.clock.advance(0.001)
    body = b"" if isinstance(case.body, NotSet) else orjson.dumps(case.body)
    query = urlencode(case.query or {}, doseq=True)
    path = case.formatted_path
    target = path + (f"?{query}" if query else "")
    headers = {key: value for key, value in (case.headers or {}).items()
               if key.lower() not in ("x-api-key", "x-timestamp", "x-signature", "authorization")}
    headers["Content-Type"] = "application/json"
    headers.update(trader.headers(case.method.upper(), target, body))
    headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"

    response = Client(fuzzed.app).open(path, method=case.method.upper(), query_string=query, data=body,
                                       headers=headers)

    case.validate_response(response, checks=CHECKS)
