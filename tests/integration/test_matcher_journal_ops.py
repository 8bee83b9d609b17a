"""The `journal` and `engine_snapshot` ops: a replica built from them equals the matcher."""

from __future__ import annotations

import random

import orjson
import pytest

from common import protocol
from common.matcher_client import MatcherClient, MatcherError
from matcher import snapshot
from matcher.dispatch import Dispatcher
from matcher.engine import Engine
from tests.integration.test_matcher_recovery import BTC, random_order, set_up
from tests.polling import poll_until

pytestmark = pytest.mark.integration


def replay(engine: Engine, client: MatcherClient, after: int, limit: int) -> int:
    """Fetch and execute every record after `after` in pages of `limit`; return the last seq."""
    dispatcher = Dispatcher(engine)
    while True:
        page = client.request("journal", after=after, limit=limit)
        for record in page["records"]:
            assert record["seq"] == after + 1, "records are gapless and in order"
            _, reject = dispatcher.execute(protocol.command_from_json(record["cmd"]), record["ts"])
            assert reject is None
            after = record["seq"]
        if after >= page["last_seq"]:
            return after


def engine_state(engine: Engine) -> dict:
    return orjson.loads(snapshot.encode(engine))


def place_orders(client: MatcherClient, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        try:
            client.request("place", **random_order(rng))
        except MatcherError:
            pass  # rejects are not journaled; the replica must agree on that too


def test_a_replica_replayed_from_the_journal_op_equals_the_matcher(make_cluster) -> None:
    cluster = make_cluster()
    process = cluster.start()
    with process.client() as client:
        set_up(client)
        place_orders(client, 400, seed=7)
        replica = Engine(0, 1000)
        last = replay(replica, client, after=0, limit=37)
        assert last == client.request("ping")["journal_seq"]
        process.restart()  # older records now come from the files, not the in-memory tail
    with process.client() as client:
        restarted = Engine(0, 1000)
        assert replay(restarted, client, after=0, limit=1000) == last
        assert engine_state(restarted) == engine_state(replica)
        state = client.request("snapshot", pair=BTC)
        assert [level for level in state["bids"]] == [
            [price, size] for price, size in protocol.book_snapshot_message(restarted.markets[BTC], None, 0)["bids"]
        ]


def test_engine_snapshot_op_serves_the_newest_snapshot_at_or_before_a_seq(make_cluster) -> None:
    process = make_cluster(journal={"snapshot_every_commands": 60}).start()
    with process.client() as client:
        assert client.request("engine_snapshot") == {"journal_seq": 0, "state": None}
        set_up(client)
        place_orders(client, 300, seed=3)
        last = client.request("ping")["journal_seq"]
        # Once a snapshot lies within 60 records of the end no further one is due, so the
        # set of snapshots stops changing under the requests below.
        poll_until(lambda: client.request("engine_snapshot")["journal_seq"] > last - 60, 20, "the last snapshot due")
        found = client.request("engine_snapshot")
        assert found["journal_seq"] > 0
        engine = snapshot.decode(found["state"].encode())
        assert replay(engine, client, after=found["journal_seq"], limit=10) == last
        rebuilt = Engine(0, 1000)
        assert replay(rebuilt, client, after=0, limit=1000) == last
        assert engine_state(engine) == engine_state(rebuilt)
        older = client.request("engine_snapshot", at_most=found["journal_seq"] - 1)
        assert 0 < older["journal_seq"] < found["journal_seq"]
        assert client.request("engine_snapshot", at_most=1) == {"journal_seq": 0, "state": None}


@pytest.mark.parametrize(
    ("fields", "field"),
    [({}, "after"), ({"after": -1}, "after"), ({"after": 0, "limit": 0}, "limit"),
     ({"after": 0, "limit": 10_001}, "limit"), ({"after": "1"}, "after")],
)
def test_journal_op_rejects_bad_ranges(matcher, fields, field) -> None:
    with matcher.client() as client:
        with pytest.raises(MatcherError) as raised:
            client.request("journal", **fields)
    assert raised.value.code == "INVALID_FIELD"
    assert raised.value.details == {"field": field}
