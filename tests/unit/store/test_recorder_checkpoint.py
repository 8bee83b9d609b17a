"""The recorder's checkpoint file: atomic round trip, and anything damaged is ignored."""

from __future__ import annotations

from common.recorder.checkpoint import checkpoint_path, read_checkpoint, write_checkpoint
from common.recorder.replica import Replica
from tests.unit.store.flow import FakeMatcher


def test_round_trip_restores_the_replica(tmp_path):
    matcher = FakeMatcher(shard_id=3)
    matcher.market()
    matcher.fund(1, USDT="100")
    matcher.request("place", account_id=1, pair="BTC-USDT", side="buy", type="limit", price="10.00", quantity="1.000")
    replica = Replica.empty(3)
    for record in matcher.records:
        replica.apply(record["seq"], record["ts"], record["cmd"])
    path = checkpoint_path(tmp_path, 3)
    write_checkpoint(path, 3, replica.journal_seq, replica.state())
    assert path == tmp_path / "recorder" / "shard-3.snap"
    assert not list(path.parent.glob("*.tmp"))
    seq, payload = read_checkpoint(path, 3)
    restored = Replica.from_state(payload, seq, 3)
    assert restored.journal_seq == len(matcher.records)
    assert restored.state() == replica.state()
    restored.engine.check_invariants()


def test_damaged_or_foreign_checkpoints_are_ignored(tmp_path):
    path = checkpoint_path(tmp_path, 0)
    assert read_checkpoint(path, 0) is None
    write_checkpoint(path, 0, 5, b'{"x": 1}')
    assert read_checkpoint(path, 1) is None  # another shard's
    data = path.read_bytes()
    path.write_bytes(data[:-1] + b"2")
    assert read_checkpoint(path, 0) is None  # checksum
    path.write_bytes(data[:20])
    assert read_checkpoint(path, 0) is None  # truncated
    path.write_bytes(b"garbage")
    assert read_checkpoint(path, 0) is None
