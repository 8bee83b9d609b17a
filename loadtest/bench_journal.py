"""Measure journal appends/s and commits/s in each fsync mode, in about five seconds.

appends/s: 100 appends then one commit, repeated (a busy matcher loop batch).
commits/s: one append then one commit, repeated (an idle matcher acknowledging each command).
Run `python loadtest/bench_journal.py [--dir PATH]` with zmx installed (`make bench` venv) or
with PYTHONPATH=. from the repository root; point --dir at the disk the matcher will use,
since fsync cost is a property of the disk.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from matcher.journal import FSYNC_MODES, Journal

PAYLOAD = (
    b'{"type":"place","market":"BTC-USD","account":1042,"side":0,"order_type":0,'
    b'"tif":0,"price":4215050,"qty":125,"client_order_id":"bot-7-000123456"}'
)
BATCH = 100


def measure(directory: str, mode: str, per_commit: int, seconds: float) -> tuple[float, float]:
    """Return (appends/s, commits/s) for commits of per_commit appends, run for about seconds."""
    with tempfile.TemporaryDirectory(dir=directory) as scratch, Journal(scratch, fsync=mode) as journal:
        append, commit = journal.append, journal.commit
        appends = commits = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(per_commit):
                append(PAYLOAD)
            commit()
            appends += per_commit
            commits += 1
        elapsed = time.perf_counter() - start
    return appends / elapsed, commits / elapsed


def main() -> None:
    """Print a table of appends/s and commits/s per fsync mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="a directory on the disk to measure (default: temp dir)")
    parser.add_argument("--seconds", type=float, default=0.8, help="duration of each of the six runs")
    args = parser.parse_args()
    print(f"payload {len(PAYLOAD)} bytes; appends/s with commits of {BATCH}; commits/s with commits of 1")
    print(f"{'fsync':>6}  {'appends/s':>12}  {'commits/s':>12}")
    for mode in FSYNC_MODES:
        appends_per_second, _ = measure(args.dir, mode, BATCH, args.seconds)
        _, commits_per_second = measure(args.dir, mode, 1, args.seconds)
        print(f"{mode:>6}  {appends_per_second:>12,.0f}  {commits_per_second:>12,.0f}")


if __name__ == "__main__":
    main()
