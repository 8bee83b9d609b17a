"""MarketFeed: the clone-pattern state machine, trades, and the messages of one tick."""

from __future__ import annotations

import orjson
import pytest

from feed.market import LIVE, SYNCING, MarketFeed, MarketInfo

PAIR = "BTC-USDT"
NOW = 1_700_000_000_000


def decode(frame: bytes) -> dict:
    length = frame[1]
    header = 2
    if length == 126:
        length, header = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, header = int.from_bytes(frame[2:10], "big"), 10
    return orjson.loads(frame[header:header + length])


def update(seq, bids=(), asks=(), trades=(), ts=NOW):
    return {"type": "update", "pair": PAIR, "seq": seq, "ts": ts, "journal_seq": seq,
            "bids": [list(level) for level in bids], "asks": [list(level) for level in asks],
            "trades": [dict(trade) for trade in trades]}


def trade(trade_id, price, quantity, ts=NOW, side="buy"):
    return {"trade_id": trade_id, "pair": PAIR, "price": price, "quantity": quantity, "taker_side": side, "ts": ts}


def snapshot(seq, bids=(), asks=(), ts=NOW):
    return {"pair": PAIR, "seq": seq, "bids": [list(level) for level in bids],
            "asks": [list(level) for level in asks], "ts": ts, "status": "trading"}


def market() -> MarketFeed:
    return MarketFeed(MarketInfo(PAIR, "0.01", "0.001", 8))


def live(seq=10) -> MarketFeed:
    feed = market()
    feed.seed_stats(None)
    assert feed.on_snapshot(snapshot(seq, [("100.00", "1.000")], [("101.00", "2.000")])) == (True, True)
    return feed


def everything(channel: str) -> bool:
    return True


def messages(feed: MarketFeed, now=NOW) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for channel, frame in feed.tick(now, everything):
        out.setdefault(channel, []).append(decode(frame))
    return out


def test_info_converts_between_decimal_strings_and_integers() -> None:
    info = MarketInfo(PAIR, "0.05", "0.001", 6)

    assert info.levels([["100.05", "1.500"], ["99.95", "0.000"]]) == [(2001, 1500), (1999, 0)]
    assert info.format_levels([(2001, 1500)]) == [["100.05", "1.500"]]
    assert info.quote_per_tick_lot == 50  # 0.05 x 0.001 = 0.00005 = 50 units of 0.000001


def test_updates_before_the_snapshot_are_buffered_then_the_newer_ones_applied() -> None:
    feed = market()
    assert feed.state == SYNCING
    assert not feed.on_update(update(9, bids=[("99.00", "1.000")]))
    assert not feed.on_update(update(10, bids=[("100.00", "1.000")]))
    assert not feed.on_update(update(11, asks=[("101.00", "0.000")]))

    assert feed.on_snapshot(snapshot(10, [("100.00", "1.000")], [("101.00", "2.000")])) == (True, True)

    assert feed.state == LIVE
    assert feed.replica.seq == 11
    assert feed.replica.top(5) == ([(10000, 1000)], [])


def test_a_gap_in_the_buffer_means_snapshot_again() -> None:
    feed = market()
    feed.on_update(update(12))

    in_sync, _ = feed.on_snapshot(snapshot(10))

    assert not in_sync and feed.state == SYNCING


def test_live_market_asks_for_a_resync_on_a_gap_a_wrong_heartbeat_or_a_seq_that_went_back() -> None:
    feed = live(10)
    assert not feed.on_update(update(11))
    assert not feed.on_heartbeat({"type": "heartbeat", "pair": PAIR, "seq": 11, "ts": NOW})
    assert not feed.on_update(update(10))  # at or before the snapshot: the clone pattern's stale delta

    assert feed.on_heartbeat({"type": "heartbeat", "pair": PAIR, "seq": 12, "ts": NOW})
    assert feed.on_update(update(13))
    assert feed.on_update(update(11))  # applied already, after the snapshot: the matcher went back


def test_heartbeats_while_syncing_are_not_judged() -> None:
    feed = market()
    assert not feed.on_heartbeat({"type": "heartbeat", "pair": PAIR, "seq": 99, "ts": NOW})


def test_a_resync_that_finds_the_same_book_changes_nothing_for_clients() -> None:
    feed = live(10)
    feed.on_update(update(11, bids=[("100.00", "3.000")]))
    feed.start_sync()

    assert feed.on_snapshot(snapshot(11, [("100.00", "3.000")], [("101.00", "2.000")])) == (True, False)
    # The change of seq 11 was never published: it still goes out as a diff.
    diff = messages(feed)["orderbook.BTC-USDT"][0]
    assert (diff["first_seq"], diff["seq"], diff["data"]["bids"]) == (11, 11, [["100.00", "3.000"]])


def test_a_resync_that_finds_another_book_resets_and_publishes_a_snapshot() -> None:
    feed = live(10)
    feed.start_sync()

    assert feed.on_snapshot(snapshot(15, [("99.00", "1.000")])) == (True, True)
    assert decode(feed.book_snapshot(None))["data"] == {
        "pair": PAIR, "seq": 15, "bids": [["99.00", "1.000"]], "asks": [], "ts": NOW}
    assert "orderbook.BTC-USDT" not in messages(feed)


def test_tick_sends_diffs_with_chained_seq_ranges_and_views() -> None:
    feed = live(10)
    feed.replica.add_view(1)
    feed.on_update(update(11, bids=[("100.50", "1.000")], ts=NOW + 1))
    feed.on_update(update(12, asks=[("101.00", "0.500")], ts=NOW + 2))

    out = messages(feed)

    [full] = out["orderbook.BTC-USDT"]
    assert full == {"channel": "orderbook.BTC-USDT", "type": "diff", "first_seq": 11, "seq": 12,
                    "data": {"bids": [["100.50", "1.000"]], "asks": [["101.00", "0.500"]]}, "ts": NOW + 2}
    [top] = out["orderbook.BTC-USDT.1"]
    assert (top["first_seq"], top["seq"], top["data"]) == (
        11, 12, {"bids": [["100.50", "1.000"], ["100.00", "0.000"]], "asks": [["101.00", "0.500"]]})
    feed.on_update(update(13, bids=[("90.00", "1.000")]))
    assert messages(feed)["orderbook.BTC-USDT"][0]["first_seq"] == 13


def test_trades_are_taken_once_while_syncing_too_and_sent_in_one_message_per_tick() -> None:
    feed = market()
    feed.seed_stats(None)
    feed.on_update(update(11, trades=[trade(1024, "100.00", "0.500")]))
    feed.on_update(update(11, trades=[trade(1024, "100.00", "0.500")]))  # the same message again
    feed.on_snapshot(snapshot(10))
    feed.on_update(update(12, trades=[trade(2048, "101.00", "0.250", side="sell"),
                                      trade(3072, "101.50", "0.250", side="sell")]))

    [message] = messages(feed)["trades.BTC-USDT"]

    assert message["type"] == "update" and message["seq"] == 12
    assert [item["trade_id"] for item in message["data"]] == [1024, 2048, 3072]
    assert message["data"][1] == trade(2048, "101.00", "0.250", side="sell")
    assert "trades.BTC-USDT" not in messages(feed)


def test_ticker_and_candles_follow_trades() -> None:
    feed = live(10)
    minute = NOW - NOW % 60_000
    feed.on_update(update(11, trades=[trade(1024, "100.00", "0.500", ts=minute + 5)]))
    feed.on_update(update(12, trades=[trade(2048, "102.00", "0.500", ts=minute + 6)]))

    out = messages(feed, now=minute + 10)

    [ticker] = out["ticker.BTC-USDT"]
    assert ticker["data"] | {"open_time": 0, "close_time": 0} == {
        "pair": PAIR, "open_time": 0, "close_time": 0, "last": "102.00", "open": "100.00", "high": "102.00",
        "low": "100.00", "volume": "1.000", "quote_volume": "101.00000000", "change": "2.00",
        "change_percent": "2.00", "trades": 2, "best_bid": "100.00", "best_bid_quantity": "1.000",
        "best_ask": "101.00", "best_ask_quantity": "2.000"}
    [candle] = out["candles.BTC-USDT.1m"]
    assert candle["data"] == {"pair": PAIR, "interval": "1m", "open_time": minute, "close_time": minute + 59_999,
                              "open": "100.00", "high": "102.00", "low": "100.00", "close": "102.00",
                              "volume": "1.000", "quote_volume": "101.00000000", "trades": 2, "closed": False}
    assert len(out) == 1 + 1 + 7  # trades, ticker, a candle per interval

    # The minute ends: the candle is sent once more, closed.
    out = messages(feed, now=minute + 60_000)
    [closed] = out["candles.BTC-USDT.1m"]
    assert closed["data"]["closed"] is True and closed["data"]["trades"] == 2
    assert "candles.BTC-USDT.5m" not in out or out["candles.BTC-USDT.5m"][0]["data"]["closed"]


def test_nothing_is_encoded_for_channels_without_subscribers() -> None:
    feed = live(10)
    feed.on_update(update(11, bids=[("100.50", "1.000")], trades=[trade(1024, "100.00", "0.500")]))

    assert feed.tick(NOW, lambda channel: False) == []
    assert feed.tick(NOW, everything) == []  # and the news of that tick is not kept for later


@pytest.mark.parametrize("depth", [None, 1])
def test_snapshots_are_the_published_book(depth) -> None:
    feed = live(10)
    feed.on_update(update(11, bids=[("100.50", "1.000")]))

    data = decode(feed.book_snapshot(depth))

    assert data["seq"] == 10 and data["data"]["bids"] == [["100.00", "1.000"]]


def test_an_idle_market_brings_lagging_clients_up_to_date_with_an_empty_diff() -> None:
    feed = live(10)
    feed.on_update(update(11, bids=[("100.00", "2.000")]))
    feed.on_update(update(12, bids=[("100.00", "1.000")]))  # back to the published size
    assert "orderbook.BTC-USDT" not in messages(feed)

    assert not feed.on_heartbeat({"type": "heartbeat", "pair": PAIR, "seq": 12, "ts": NOW})
    [diff] = messages(feed)["orderbook.BTC-USDT"]

    assert (diff["first_seq"], diff["seq"], diff["data"]) == (11, 12, {"bids": [], "asks": []})
    assert not feed.on_heartbeat({"type": "heartbeat", "pair": PAIR, "seq": 12, "ts": NOW})
    assert "orderbook.BTC-USDT" not in messages(feed)
