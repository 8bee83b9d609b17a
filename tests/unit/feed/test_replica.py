"""BookReplica and BookView: clone pattern, conflation, depth-limited views.

Fixed examples first (arrange a book, act, assert the whole published state), then a
differential property test against a naive reference: a plain dict book whose every
version is kept by seq, and clients that start from a published snapshot and apply
diffs. After every flush each client's book must equal the naive top-N of the book at
the seq of the last message it received, and every diff's first_seq must be the
previous message's seq + 1.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import example, given, settings

from feed.replica import APPLIED, GAP, STALE, BookReplica, Diff


def book(seq=10, bids=((100, 5), (99, 3), (98, 1)), asks=((101, 2), (102, 4), (103, 6))) -> BookReplica:
    replica = BookReplica()
    replica.reset(seq, list(bids), list(asks))
    return replica


def test_reset_publishes_the_snapshot_best_first() -> None:
    replica = book(bids=[(98, 1), (100, 5), (99, 3)], asks=[(103, 6), (101, 2)])

    assert replica.published_snapshot() == (10, [(100, 5), (99, 3), (98, 1)], [(101, 2), (103, 6)])
    assert replica.best() == ((100, 5), (101, 2))
    assert replica.flush() is None


def test_next_seq_applies_stale_is_dropped_gap_changes_nothing() -> None:
    replica = book()

    assert replica.apply(11, [(100, 7)], []) is APPLIED
    assert replica.apply(11, [(100, 9)], []) is STALE
    assert replica.apply(9, [(100, 9)], []) is STALE
    assert replica.apply(13, [(100, 9)], [(101, 0)]) is GAP

    assert replica.seq == 11
    assert replica.top(1) == ([(100, 7)], [(101, 2)])


def test_heartbeat_agrees_only_at_the_applied_seq() -> None:
    replica = book()

    assert replica.check_heartbeat(10)
    assert not replica.check_heartbeat(11)  # missed an update
    assert not replica.check_heartbeat(9)  # the matcher went back: resync too


def test_flush_conflates_into_absolute_sizes_with_a_seq_range() -> None:
    replica = book()
    replica.apply(11, [(100, 7)], [])
    replica.apply(12, [(100, 8), (97, 2)], [(101, 0)])
    replica.apply(13, [], [(101, 1)])

    diff = replica.flush()

    assert (diff.first_seq, diff.seq) == (11, 13)
    assert diff.bids == [(100, 8), (97, 2)]
    assert diff.asks == [(101, 1)]
    assert replica.published_snapshot() == (13, [(100, 8), (99, 3), (98, 1), (97, 2)], [(101, 1), (102, 4), (103, 6)])
    assert replica.flush() is None


def test_deleted_level_is_sent_as_zero_and_changes_that_cancel_out_are_not_sent() -> None:
    replica = book()
    replica.apply(11, [(99, 0), (100, 6)], [])
    replica.apply(12, [(100, 5)], [])  # back to the published size

    diff = replica.flush()

    assert (diff.first_seq, diff.seq, diff.bids, diff.asks) == (11, 12, [(99, 0)], [])


def test_a_window_with_no_net_change_keeps_the_published_seq_and_the_next_diff_covers_it() -> None:
    replica = book()
    replica.apply(11, [(100, 6)], [])
    replica.apply(12, [(100, 5)], [])
    assert replica.flush() is None
    assert replica.published_snapshot()[0] == 10  # the book at 10 is the book at 12

    replica.apply(13, [], [(102, 1)])
    diff = replica.flush()

    assert (diff.first_seq, diff.seq, diff.asks) == (11, 13, [(102, 1)])


def test_catch_up_sends_an_empty_diff_when_the_published_seq_lags() -> None:
    replica = book()
    view = replica.add_view(1)
    replica.apply(11, [(100, 6)], [])
    replica.apply(12, [(100, 5)], [])
    replica.apply(13, [(98, 2)], [])  # below the view's top

    diff = replica.flush(catch_up=True)

    assert (diff.first_seq, diff.seq, diff.bids, diff.asks) == (11, 13, [(98, 2)], [])
    assert (view.pending.first_seq, view.pending.seq, view.pending.bids, view.pending.asks) == (11, 13, [], [])
    assert replica.flush(catch_up=True) is None and view.pending is None  # current: nothing to say


def test_published_snapshot_between_flushes_is_the_last_flushed_book() -> None:
    replica = book()
    replica.apply(11, [(100, 0), (104, 1)], [(101, 9)])

    assert replica.published_snapshot() == (10, [(100, 5), (99, 3), (98, 1)], [(101, 2), (102, 4), (103, 6)])
    assert replica.published_snapshot(2) == (10, [(100, 5), (99, 3)], [(101, 2), (102, 4)])


def test_depth_view_sends_the_level_that_moves_into_the_top_when_a_better_one_leaves() -> None:
    replica = book()
    view = replica.add_view(2)
    replica.apply(11, [(100, 0)], [])

    replica.flush()

    assert (view.pending.first_seq, view.pending.seq) == (11, 11)
    assert view.pending.bids == [(100, 0), (98, 1)]  # 98 was never touched by the matcher
    assert view.pending.asks == []
    assert replica.published_snapshot(2) == (11, [(99, 3), (98, 1)], [(101, 2), (102, 4)])


def test_depth_view_deletes_the_level_pushed_out_by_a_better_one() -> None:
    replica = book()
    view = replica.add_view(2)
    replica.apply(11, [], [(100, 3)])  # a new best ask pushes 102 out of the top 2... of asks

    replica.flush()

    assert view.pending.asks == [(100, 3), (102, 0)]


def test_depth_view_ignores_changes_below_its_top_and_keeps_its_own_seq_range() -> None:
    replica = book()
    view = replica.add_view(2)
    replica.apply(11, [(98, 4)], [(103, 1)])  # both below the top 2
    replica.flush()
    assert view.pending is None
    assert replica.published_snapshot(2) == (10, [(100, 5), (99, 3)], [(101, 2), (102, 4)])

    replica.apply(12, [(100, 1)], [])
    full = replica.flush()

    assert (full.first_seq, full.seq) == (12, 12)
    assert (view.pending.first_seq, view.pending.seq, view.pending.bids) == (11, 12, [(100, 1)])


def test_depth_view_follows_changes_at_the_worst_level_of_its_top() -> None:
    replica = book()
    view = replica.add_view(2)
    replica.apply(11, [(99, 2)], [(102, 0)])  # exactly the worst published level of each side

    replica.flush()

    assert view.pending.bids == [(99, 2)]
    assert view.pending.asks == [(102, 0), (103, 6)]


def test_a_view_added_between_flushes_starts_from_the_published_book() -> None:
    replica = book()
    replica.apply(11, [(101, 1)], [])
    view = replica.add_view(1)
    assert replica.published_snapshot(1) == (10, [(100, 5)], [(101, 2)])

    replica.flush()

    assert (view.pending.first_seq, view.pending.seq, view.pending.bids) == (11, 11, [(101, 1), (100, 0)])


def test_reset_republishes_every_view() -> None:
    replica = book()
    view = replica.add_view(1)
    replica.apply(11, [(100, 1)], [])

    replica.reset(40, [(90, 1)], [(95, 2)])

    assert replica.flush() is None
    assert view.pending is None
    assert replica.published_snapshot(1) == (40, [(90, 1)], [(95, 2)])
    assert replica.published_snapshot() == (40, [(90, 1)], [(95, 2)])


# ------------------------------------------------------------------ property test

PRICES = st.integers(min_value=1, max_value=12)
SIZES = st.integers(min_value=0, max_value=3)
LEVELS = st.lists(st.tuples(PRICES, SIZES), max_size=4)
DEPTHS = st.sampled_from([None, 1, 2, 3, 5])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("update"), LEVELS, LEVELS),
        st.tuples(st.just("flush"), st.booleans()),
        st.tuples(st.just("subscribe"), DEPTHS),
        st.tuples(st.just("gap")),
        st.tuples(st.just("stale")),
        st.tuples(st.just("resync"), LEVELS, LEVELS),
    ),
    max_size=60,
)


def naive_top(levels: dict[int, int], depth: int | None, descending: bool) -> list[tuple[int, int]]:
    ordered = sorted(levels.items(), reverse=descending)
    return ordered if depth is None else ordered[:depth]


class Client:
    """A subscriber of one view: holds what it was sent, checks the chain."""

    def __init__(self, depth: int | None, seq: int, bids, asks) -> None:
        self.depth = depth
        self.seq = seq
        self.bids = dict(bids)
        self.asks = dict(asks)

    def receive(self, diff: Diff) -> None:
        assert diff.first_seq == self.seq + 1, (diff, self.seq)
        assert diff.seq >= diff.first_seq
        for levels, side in ((diff.bids, self.bids), (diff.asks, self.asks)):
            for price, size in levels:
                if size:
                    side[price] = size
                else:
                    assert price in side, f"deleting {price} that the client does not hold"
                    del side[price]
        self.seq = diff.seq

    def matches(self, history: dict[int, tuple[dict, dict]]) -> bool:
        bids, asks = history[self.seq]
        return (sorted(self.bids.items(), reverse=True) == naive_top(bids, self.depth, True)
                and sorted(self.asks.items()) == naive_top(asks, self.depth, False))


@settings(max_examples=500, derandomize=True, deadline=None)
@given(OPERATIONS)
@example([("subscribe", 2), ("update", [(1, 0)], []), ("flush", False)])
def test_clients_follow_the_naive_book_through_any_flow(operations) -> None:
    bids: dict[int, int] = {1: 1, 5: 2}
    asks: dict[int, int] = {7: 1, 12: 3}
    seq = 3
    history = {seq: (dict(bids), dict(asks))}
    replica = BookReplica()
    replica.reset(seq, list(bids.items()), list(asks.items()))
    clients: list[Client] = []

    def subscribe(depth):
        if depth is not None:
            replica.add_view(depth)
        snapshot_seq, snapshot_bids, snapshot_asks = replica.published_snapshot(depth)
        client = Client(depth, snapshot_seq, snapshot_bids, snapshot_asks)
        assert client.matches(history)
        clients.append(client)

    for operation in operations:
        kind = operation[0]
        if kind == "update":
            for levels, side in ((operation[1], bids), (operation[2], asks)):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
            seq += 1
            history[seq] = (dict(bids), dict(asks))
            assert replica.apply(seq, operation[1], operation[2]) is APPLIED
        elif kind == "gap":
            assert replica.apply(seq + 2, [(3, 3)], [(9, 9)]) is GAP
        elif kind == "stale":
            assert replica.apply(seq, [(3, 3)], [(9, 9)]) is STALE
        elif kind == "subscribe":
            subscribe(operation[1])
        elif kind == "resync":
            # A fresh snapshot further on: every client starts again from it.
            bids = {price: size for price, size in operation[1] if size}
            asks = {price: size for price, size in operation[2] if size}
            seq += 5
            history[seq] = (dict(bids), dict(asks))
            replica.reset(seq, list(bids.items()), list(asks.items()))
            depths = [client.depth for client in clients]
            clients.clear()
            for depth in depths:
                subscribe(depth)
        else:
            full = replica.flush(catch_up=operation[1])
            for client in clients:
                diff = full if client.depth is None else replica.views[client.depth].pending
                if diff is not None:
                    client.receive(diff)
                assert client.matches(history), (client.depth, client.seq)
                if operation[1]:
                    assert client.seq == seq  # caught up, with an empty diff if need be
                # What a client holds is always the current book's top, whatever its seq.
                assert sorted(client.bids.items(), reverse=True) == naive_top(bids, client.depth, True)
                assert sorted(client.asks.items()) == naive_top(asks, client.depth, False)
