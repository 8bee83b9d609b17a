"""OrderBook (a snapshot plus sequenced deltas) and BookSync (the clone pattern over the matcher's PUB)."""

from __future__ import annotations

from decimal import Decimal as D

from common.sdk.book import APPLIED, GAP, STALE, BookSync, OrderBook


def snapshot(seq: int, bids=(("99.00", "1.000"), ("98.00", "2.000")), asks=(("101.00", "0.500"),)) -> dict:
    return {"pair": "BTC-USDT", "seq": seq, "bids": [list(level) for level in bids],
            "asks": [list(level) for level in asks], "ts": 0}


def update(seq: int, bids=(), asks=(), trades=()) -> dict:
    return {"type": "update", "pair": "BTC-USDT", "seq": seq, "ts": 0, "journal_seq": seq,
            "bids": [list(level) for level in bids], "asks": [list(level) for level in asks], "trades": list(trades)}


def heartbeat(seq: int) -> dict:
    return {"type": "heartbeat", "pair": "BTC-USDT", "seq": seq, "ts": 0}


def levels(book: OrderBook) -> dict:
    return {side: [(str(price), str(size)) for price, size in entries] for side, entries in book.levels().items()}


def test_a_book_applies_chained_deltas_and_stops_at_a_gap() -> None:
    book = OrderBook("BTC-USDT")
    assert book.apply(1, 1, [], []) == GAP  # nothing loaded yet
    book.load(snapshot(10))
    assert book.best_bid() == (D("99.00"), D("1.000")) and book.best_ask() == (D("101.00"), D("0.500"))
    assert book.mid() == D("100.00")

    assert book.apply(11, 13, [["99.50", "0.300"], ["98.00", "0.000"]], [["101.00", "0"]]) == APPLIED
    assert levels(book) == {"bids": [("99.50", "0.300"), ("99.00", "1.000")], "asks": []}
    assert book.seq == 13 and book.mid() is None
    assert book.apply(12, 13, [["1.00", "1"]], []) == STALE
    assert book.apply(15, 15, [["1.00", "1"]], []) == GAP
    assert not book.synced and book.seq == 13
    assert levels(book)["bids"] == [("99.50", "0.300"), ("99.00", "1.000")]  # the gapped delta changed nothing
    assert book.levels(depth=1) == {"bids": [(D("99.50"), D("0.300"))], "asks": []}


def test_book_sync_waits_for_a_live_stream_then_replays_what_the_snapshot_lacks() -> None:
    sync = BookSync("BTC-USDT")
    assert not sync.snapshot_due  # nothing received: the subscription may not be live yet
    sync.on_message(update(11, bids=[("99.00", "3.000")]))
    assert sync.snapshot_due
    sync.snapshot_requested()
    sync.on_message(update(12, asks=[("100.50", "1.000")]))
    sync.on_message(update(13, bids=[("97.00", "1.000")], trades=[{"trade_id": 4, "price": "100.50"}]))
    assert not sync.snapshot_due and not sync.book.synced

    sync.on_snapshot(snapshot(12, bids=(("99.00", "3.000"),), asks=(("100.50", "1.000"),)))
    assert sync.book.synced and sync.book.seq == 13 and sync.resyncs == 0
    assert levels(sync.book) == {"bids": [("99.00", "3.000"), ("97.00", "1.000")], "asks": [("100.50", "1.000")]}
    assert sync.last_trade == {"trade_id": 4, "price": "100.50"}
    assert sync.on_message(heartbeat(13)) is None


def test_book_sync_resyncs_after_a_gap_or_a_heartbeat_that_disagrees() -> None:
    sync = BookSync("BTC-USDT")
    sync.on_message(heartbeat(5))
    sync.snapshot_requested()
    sync.on_snapshot(snapshot(5))

    assert sync.on_message(update(7, bids=[("90.00", "1.000")])) == GAP  # 6 was lost
    assert sync.snapshot_due and not sync.book.synced
    sync.snapshot_requested()
    sync.on_message(update(8, asks=[("102.00", "1.000")]))
    sync.on_snapshot(snapshot(7, bids=(("90.00", "1.000"),), asks=()))
    assert sync.book.synced and sync.book.seq == 8 and sync.resyncs == 1
    assert levels(sync.book)["asks"] == [("102.00", "1.000")]

    assert sync.on_message(heartbeat(9)) == GAP  # an update the stream never delivered
    assert sync.snapshot_due
    sync.snapshot_requested()
    sync.snapshot_failed()  # no answer: ask again
    assert sync.snapshot_due
    sync.snapshot_requested()
    sync.on_snapshot(snapshot(9))
    assert sync.book.synced and sync.on_message(heartbeat(4)) == GAP  # the matcher came back with less


def test_book_sync_finds_a_gap_among_the_buffered_updates() -> None:
    sync = BookSync("BTC-USDT")
    sync.on_message(heartbeat(1))
    sync.snapshot_requested()
    for seq in (2, 3, 5):
        sync.on_message(update(seq, bids=[(f"{seq}.00", "1.000")]))
    sync.on_snapshot(snapshot(2, bids=(("2.00", "1.000"),), asks=()))
    assert not sync.book.synced and sync.snapshot_due  # 4 is missing: ask again
