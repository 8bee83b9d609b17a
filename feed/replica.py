"""A market's order book rebuilt from the matcher's snapshot plus its seq-stamped deltas.

No I/O and no clock: the feed's server parses the matcher's messages into integers (price
ticks, size lots) and drives a `BookReplica`; this module answers what changed.

Clone pattern
    `reset(seq, bids, asks)` loads a snapshot tagged with the market's seq S. `apply(seq,
    bids, asks)` then answers APPLIED (seq == S + 1: levels set, a size of 0 deletes),
    STALE (seq <= the replica's: already contained, dropped) or GAP (something is
    missing: nothing applied, the caller must resync). `check_heartbeat(seq)` says
    whether a heartbeat's seq agrees with the replica.

Conflation
    Between two `flush()` calls the replica remembers, for every level it touched, the
    size that level had at the previous flush (the *published* book, which every client
    holds). `flush()` returns one `Diff` with the absolute size of every level whose size
    now differs from the published one (0: the level is gone) and the range of matcher
    seqs it covers: `first_seq` is the previous diff's `seq` + 1, so diffs chain without
    gaps. A window whose changes cancel out (or that only advanced the seq, such as a
    halt) yields no diff, and the published seq stays where it was: the book at that seq
    is exactly the current book, so the next diff's range simply starts earlier.
    `published_snapshot()` returns the published book and its seq, so a client that
    subscribes between two flushes gets a snapshot that the next diff continues exactly.
    `flush(catch_up=True)` (the caller's choice when the market is idle) sends an empty
    diff instead of nothing when the published seq lags, so clients learn they are current.

Depth-limited views
    A `BookView(depth)` publishes only the best `depth` levels of each side. Its diffs
    compare the top `depth` levels now with the ones it last published: a level that
    changed inside the top gets its new size, a level pushed out of the top (or deleted)
    gets 0, and a level that moved into the top because a better one left gets its
    absolute size although the matcher never touched it. Each view keeps its own seq
    range, so a client of the view sees a gapless chain too.

Layout and complexity
    `asks` maps price -> size and `bids` maps -price -> size, both SortedDicts, so index 0
    of either side is its best price. Applying a level is O(log L); a flush is O(changed
    levels); a view update is O(depth) per side that changed, skipped when every change on
    a side lies below a full published top.
"""

from __future__ import annotations

import enum
from itertools import islice

from sortedcontainers import SortedDict

Levels = list[tuple[int, int]]  # (price ticks, size lots), best price first


class Outcome(enum.Enum):
    """What `BookReplica.apply` did with a delta."""

    APPLIED = "applied"
    STALE = "stale"
    GAP = "gap"


APPLIED, STALE, GAP = Outcome.APPLIED, Outcome.STALE, Outcome.GAP


class Diff:
    """Absolute sizes of the levels that changed over the matcher seqs `first_seq`..`seq`."""

    __slots__ = ("first_seq", "seq", "bids", "asks")

    def __init__(self, first_seq: int, seq: int, bids: Levels, asks: Levels) -> None:
        self.first_seq = first_seq
        self.seq = seq
        self.bids = bids
        self.asks = asks

    def __repr__(self) -> str:
        return f"Diff({self.first_seq}..{self.seq}, bids={self.bids}, asks={self.asks})"


class BookReplica:
    """One market's book: levels as integers, the seq applied, and what changed since the last flush."""

    __slots__ = ("bids", "asks", "seq", "published_seq", "_bid_before", "_ask_before", "views")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # -price -> size
        self.asks: SortedDict = SortedDict()  # price -> size
        self.seq = 0
        self.published_seq = 0
        # price -> size at the last flush (0: absent), for each level touched since.
        self._bid_before: dict[int, int] = {}
        self._ask_before: dict[int, int] = {}
        self.views: dict[int, BookView] = {}

    # ---------------------------------------------------------------- clone pattern

    def reset(self, seq: int, bids: Levels, asks: Levels) -> None:
        """Load a snapshot at `seq`: it becomes the published book of the replica and of every view."""
        self.bids = SortedDict({-price: size for price, size in bids if size})
        self.asks = SortedDict({price: size for price, size in asks if size})
        self.seq = self.published_seq = seq
        self._bid_before.clear()
        self._ask_before.clear()
        for view in self.views.values():
            view.reset(self)

    def apply(self, seq: int, bids: Levels, asks: Levels) -> Outcome:
        """Apply one delta if it is the next seq; otherwise say why not and change nothing."""
        if seq <= self.seq:
            return STALE
        if seq != self.seq + 1:
            return GAP
        self.seq = seq
        if bids:
            side, before = self.bids, self._bid_before
            for price, size in bids:
                key = -price
                if price not in before:
                    before[price] = side.get(key, 0)
                if size:
                    side[key] = size
                else:
                    side.pop(key, None)
        if asks:
            side, before = self.asks, self._ask_before
            for price, size in asks:
                if price not in before:
                    before[price] = side.get(price, 0)
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        return APPLIED

    def check_heartbeat(self, seq: int) -> bool:
        """Return whether a heartbeat at `seq` agrees with the replica (else: resync)."""
        return seq == self.seq

    # ---------------------------------------------------------------- conflation

    def flush(self, catch_up: bool = False) -> Diff | None:
        """Publish what changed since the last flush: one diff for the full book, and update every view.

        Returns the full book's diff, or None when the published book is unchanged (with
        `catch_up`, an empty diff up to the current seq if the published seq lags). The
        views' own diffs are left in `view.pending` for the caller to take.
        """
        bid_before, ask_before = self._bid_before, self._ask_before
        seq = self.seq
        for view in self.views.values():
            view.pending = view.update(self, bid_before, ask_before) if (bid_before or ask_before) else None
            if view.pending is None and catch_up and view.seq < seq:
                view.pending = Diff(view.seq + 1, seq, [], [])
                view.seq = seq
        bids = asks = None
        if bid_before or ask_before:
            bids_now, asks_now = self.bids, self.asks
            bids = [(price, bids_now.get(-price, 0)) for price, size in bid_before.items()
                    if bids_now.get(-price, 0) != size]
            asks = [(price, asks_now.get(price, 0)) for price, size in ask_before.items()
                    if asks_now.get(price, 0) != size]
            bid_before.clear()
            ask_before.clear()
        if not bids and not asks:
            if catch_up and self.published_seq < seq:
                diff = Diff(self.published_seq + 1, seq, [], [])
                self.published_seq = seq
                return diff
            return None
        bids.sort(reverse=True)
        asks.sort()
        diff = Diff(self.published_seq + 1, self.seq, bids, asks)
        self.published_seq = self.seq
        return diff

    def published_snapshot(self, depth: int | None = None) -> tuple[int, Levels, Levels]:
        """Return (seq, bids, asks) of the book as last published, best first, at most `depth` levels a side."""
        if depth is not None:
            view = self.views.get(depth)
            if view is not None:
                return view.seq, _sorted_levels(view.bids, True), _sorted_levels(view.asks, False)
        bids = {-key: size for key, size in self.bids.items()}
        asks = dict(self.asks.items())
        for price, size in self._bid_before.items():
            _restore(bids, price, size)
        for price, size in self._ask_before.items():
            _restore(asks, price, size)
        bid_levels = _sorted_levels(bids, True)
        ask_levels = _sorted_levels(asks, False)
        if depth is not None:
            bid_levels, ask_levels = bid_levels[:depth], ask_levels[:depth]
        return self.published_seq, bid_levels, ask_levels

    def top(self, depth: int) -> tuple[Levels, Levels]:
        """Return the current best `depth` levels of each side, best first."""
        bids, asks = self.bids, self.asks
        return ([(-key, bids[key]) for key in islice(bids.keys(), depth)],
                [(key, asks[key]) for key in islice(asks.keys(), depth)])

    def best(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Return the current best bid and best ask as (price, size), or None for an empty side."""
        bid = ask = None
        if self.bids:
            key, size = self.bids.peekitem(0)
            bid = (-key, size)
        if self.asks:
            ask = self.asks.peekitem(0)
        return bid, ask

    # ---------------------------------------------------------------- views

    def add_view(self, depth: int) -> "BookView":
        """Return the view of the best `depth` levels, created from the published book if new."""
        view = self.views.get(depth)
        if view is None:
            seq, bids, asks = self.published_snapshot(depth)
            view = self.views[depth] = BookView(depth)
            view.seq, view.bids, view.asks = seq, dict(bids), dict(asks)
        return view

    def remove_view(self, depth: int) -> None:
        self.views.pop(depth, None)


class BookView:
    """The best `depth` levels of each side as last published, with their own seq range."""

    __slots__ = ("depth", "seq", "bids", "asks", "pending")

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self.seq = 0
        self.bids: dict[int, int] = {}  # price -> size, the published top
        self.asks: dict[int, int] = {}
        self.pending: Diff | None = None

    def reset(self, replica: BookReplica) -> None:
        bids, asks = replica.top(self.depth)
        self.seq, self.bids, self.asks, self.pending = replica.seq, dict(bids), dict(asks), None

    def update(self, replica: BookReplica, bid_changes: dict[int, int], ask_changes: dict[int, int]) -> Diff | None:
        """Compare the replica's top with the published one; return the diff, or None if the top is unchanged."""
        depth = self.depth
        bids = asks = None
        if bid_changes and _may_reach_top(self.bids, bid_changes, depth, True):
            keys = replica.bids
            top = {-key: keys[key] for key in islice(keys.keys(), depth)}
            bids = _compare(self.bids, top)
            if bids:
                self.bids = top
                bids.sort(reverse=True)
        if ask_changes and _may_reach_top(self.asks, ask_changes, depth, False):
            keys = replica.asks
            top = {key: keys[key] for key in islice(keys.keys(), depth)}
            asks = _compare(self.asks, top)
            if asks:
                self.asks = top
                asks.sort()
        if not bids and not asks:
            return None
        diff = Diff(self.seq + 1, replica.seq, bids or [], asks or [])
        self.seq = replica.seq
        return diff


def _may_reach_top(published: dict[int, int], changes: dict[int, int], depth: int, bids: bool) -> bool:
    """Return False only when every changed price lies strictly below a full published top."""
    if len(published) < depth:
        return True
    if bids:
        worst = min(published)
        return any(price >= worst for price in changes)
    worst = max(published)
    return any(price <= worst for price in changes)


def _compare(old: dict[int, int], new: dict[int, int]) -> Levels:
    changed = [(price, size) for price, size in new.items() if old.get(price) != size]
    changed += [(price, 0) for price in old if price not in new]
    return changed


def _restore(levels: dict[int, int], price: int, size: int) -> None:
    if size:
        levels[price] = size
    else:
        levels.pop(price, None)


def _sorted_levels(levels: dict[int, int], descending: bool) -> Levels:
    return sorted(levels.items(), reverse=descending)
