"""An in-process stand-in for a matcher: executes requests and keeps the journal records.

It runs requests exactly like `matcher/server.py` does (decode, `Dispatcher.execute`,
journal the accepted state changes as `{"seq", "ts", "cmd"}`), without sockets or files,
so store tests can produce a journal, feed it to a recorder `Replica` and compare the
store with the matcher's own answers.
"""

from __future__ import annotations

from typing import Any

from common import protocol
from common.recorder.replica import Replica
from common.store.batch import Batch
from matcher.dispatch import Dispatcher
from matcher.engine import Engine

START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


class Rejected(Exception):
    pass


class FakeMatcher:
    def __init__(self, shard_id: int = 0, start_ns: int = START_NS) -> None:
        self.engine = Engine(shard_id)
        self.dispatcher = Dispatcher(self.engine)
        self.records: list[dict[str, Any]] = []
        self.ts = start_ns

    def request(self, op: str, ts: int | None = None, **fields: Any) -> Any:
        """Execute one request; return its reply data, raise Rejected on a reject."""
        command = protocol.decode_command(protocol.encode_request(None, op, **fields))
        if ts is None:
            self.ts += 1_000_000  # 1 ms per request unless told otherwise
            ts = self.ts
        else:
            self.ts = max(self.ts, ts)
        data, reject = self.dispatcher.execute(command, ts)
        if reject is not None:
            raise Rejected(reject)
        if op in protocol.MUTATING:
            self.records.append({"seq": len(self.records) + 1, "ts": ts, "cmd": command.to_json()})
        return data

    def market(self, pair: str = "BTC-USDT", **fields: Any) -> None:
        self.request("create_market", pair=pair, **{"tick_size": "0.01", "lot_size": "0.001", **fields})

    def fund(self, account_id: int, **amounts: str) -> None:
        for asset, amount in amounts.items():
            self.request("deposit", account_id=account_id, asset=asset, amount=amount)


def record(store, matcher: FakeMatcher, replica: Replica | None = None, batch_records: int = 50,
           shard_id: int = 0) -> Replica:
    """Feed every record the replica has not seen to it and write them to the store in batches."""
    if replica is None:
        replica = Replica.empty(shard_id)
    pending = [record for record in matcher.records if record["seq"] > replica.journal_seq]
    for start in range(0, len(pending), batch_records):
        batch = Batch(shard_id, replica.journal_seq)
        for item in pending[start:start + batch_records]:
            replica.apply(item["seq"], item["ts"], item["cmd"], batch)
        store.write_batch(batch)
    return replica
