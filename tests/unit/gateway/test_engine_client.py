"""The engine client against a ROUTER in a thread that plays the matcher."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator

import orjson
import pytest
import zmq

from common.types import RejectCode
from gateway.engine_client import EngineClient
from gateway.envelope import ApiError
from tests.conftest import _free_port
from tests.polling import poll_until


class FakeMatcher:
    """A ROUTER answering each request with `answer(request) -> list of reply dicts`."""

    def __init__(self, endpoint: str, answer: Callable[[dict], list[dict]]) -> None:
        self.endpoint = endpoint
        self.answer = answer
        self.received: list[dict] = []
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.router.poll(20):
                continue
            identity, frame = self.router.recv_multipart()
            request = orjson.loads(frame)
            self.received.append(request)
            for reply in self.answer(request):
                self.router.send_multipart([identity, orjson.dumps(reply)])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.router.close()
        self.context.term()


def echo(request: dict) -> list[dict]:
    return [{"id": request["id"], "ok": True, "data": request}]


@pytest.fixture
def endpoint() -> str:
    return f"tcp://127.0.0.1:{_free_port()}"


@pytest.fixture
def closing() -> Iterator[list]:
    things: list = []
    yield things
    for thing in reversed(things):
        thing.close()


def test_replies_reach_the_thread_that_asked(endpoint, closing) -> None:
    closing.append(FakeMatcher(endpoint, echo))
    client = EngineClient({0: endpoint}, timeout=5)
    closing.append(client)
    failures = []

    def work(thread_number: int) -> None:
        for index in range(200):
            data = client.call(0, "get_order", {"account_id": thread_number + 1, "order_id": index + 1})
            if (data["account_id"], data["order_id"]) != (thread_number + 1, index + 1):
                failures.append((thread_number, index, data))

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert client.unmatched_replies == 0


def test_rejects_become_api_errors_with_the_matchers_code(endpoint, closing) -> None:
    def reject(request: dict) -> list[dict]:
        return [{"id": request["id"], "ok": False, "error": {"code": "INSUFFICIENT_BALANCE", "number": 4001,
                                                             "message": "not enough", "details": {"asset": "USDT"}}}]

    closing.append(FakeMatcher(endpoint, reject))
    client = EngineClient({0: endpoint}, timeout=5)
    closing.append(client)

    with pytest.raises(ApiError) as raised:
        client.call(0, "place", {"account_id": 1})

    assert (raised.value.code, raised.value.details) == (RejectCode.INSUFFICIENT_BALANCE, {"asset": "USDT"})


def test_replies_with_unknown_ids_are_dropped_and_counted(endpoint, closing) -> None:
    def with_strays(request: dict) -> list[dict]:
        return [{"id": 10**12, "ok": True, "data": "stray"}, {"id": "text", "ok": True, "data": "stray"},
                {"id": request["id"], "ok": True, "data": "mine"}]

    closing.append(FakeMatcher(endpoint, with_strays))
    client = EngineClient({0: endpoint}, timeout=5)
    closing.append(client)

    assert client.call(0, "ping") == "mine"
    poll_until(lambda: client.unmatched_replies == 2, 5, "both strays counted")


def test_a_silent_matcher_times_out_once_and_the_late_reply_is_dropped(endpoint, closing) -> None:
    held: list[dict] = []

    def hold(request: dict) -> list[dict]:
        held.append(request)
        return []

    matcher = FakeMatcher(endpoint, hold)
    closing.append(matcher)
    client = EngineClient({0: endpoint}, timeout=0.3)
    closing.append(client)
    started = time.monotonic()

    with pytest.raises(ApiError) as raised:
        client.call(0, "place", {"account_id": 1, "client_order_id": "once"})

    assert raised.value.code is RejectCode.MATCHER_TIMEOUT
    assert 0.3 <= time.monotonic() - started < 2
    assert [request["client_order_id"] for request in matcher.received] == ["once"]  # never resent
    matcher.answer = echo
    assert client.call(0, "ping")["op"] == "ping"  # the connection still works
    assert client.unmatched_replies == 0


def test_no_matcher_is_unavailable_and_fails_fast_until_one_appears(endpoint, closing) -> None:
    client = EngineClient({0: endpoint}, timeout=5, connect_grace=0.2)
    closing.append(client)

    started = time.monotonic()
    with pytest.raises(ApiError) as raised:
        client.call(0, "place", {"account_id": 1})
    assert raised.value.code is RejectCode.MATCHER_UNAVAILABLE
    assert 0.2 <= time.monotonic() - started < 1.5

    started = time.monotonic()
    with pytest.raises(ApiError):
        client.call(0, "ping")
    assert time.monotonic() - started < 0.1  # known down: no second grace

    matcher = FakeMatcher(endpoint, echo)
    closing.append(matcher)

    def answered() -> bool:
        try:
            return client.call(0, "ping")["op"] == "ping"
        except ApiError as error:
            assert error.code is RejectCode.MATCHER_UNAVAILABLE
            return False

    poll_until(answered, 5, "the client reconnected")
    assert [request["op"] for request in matcher.received] == ["ping"]  # nothing undelivered leaked through


def test_a_request_made_while_connecting_is_delivered_once_connected(endpoint, closing) -> None:
    client = EngineClient({0: endpoint}, timeout=5, connect_grace=3)
    closing.append(client)
    result: list = []
    caller = threading.Thread(target=lambda: result.append(client.call(0, "ping")))
    caller.start()
    poll_until(lambda: client._pending, 5, "the request to be in flight")

    closing.append(FakeMatcher(endpoint, echo))
    caller.join(5)

    assert result and result[0]["op"] == "ping"


def test_call_many_sends_everything_before_waiting(closing) -> None:
    endpoints = {shard_id: f"tcp://127.0.0.1:{_free_port()}" for shard_id in (0, 1)}
    for shard_id, endpoint in endpoints.items():
        closing.append(FakeMatcher(endpoint, lambda request, shard_id=shard_id: [
            {"id": request["id"], "ok": True, "data": shard_id}]))
    client = EngineClient(endpoints, timeout=5)
    closing.append(client)

    assert client.call_many([(1, "ping", None), (0, "ping", None), (1, "ping", None)]) == [1, 0, 1]
    with pytest.raises(ValueError):
        client.call(7, "ping")


def _call_in_child(client: EngineClient, queue) -> None:
    queue.put(client.call(0, "ping")["op"])


def test_a_forked_worker_gets_sockets_of_its_own(endpoint, closing) -> None:
    closing.append(FakeMatcher(endpoint, echo))
    client = EngineClient({0: endpoint}, timeout=5)
    closing.append(client)
    assert client.call(0, "ping")["op"] == "ping"  # the parent's I/O thread is running

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_call_in_child, args=(client, queue))
    child.start()
    child.join(20)

    assert child.exitcode == 0
    assert queue.get(timeout=5) == "ping"
    assert client.call(0, "ping")["op"] == "ping"
    assert client._pid == os.getpid()
