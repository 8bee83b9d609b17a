"""The recorder process: follow each matcher shard's journal and write its history to the store.

The recorder is an event-sourced replica. For each shard it keeps a `Replica` (an Engine
fed the shard's journal records), fetches records from the matcher over a DEALER (`journal`
op), executes them, and writes the rows they produce together with its progress
(shard, journal seq) in one transaction (`Store.write_batch`). The journal is the source of
truth; the PUB sockets are only a doorbell:

- it SUBscribes to the shard's public and private PUBs and fetches as soon as anything
  arrives (an update, an account event or a heartbeat), and also every `poll_seconds`,
  so a dropped PUB message delays nothing for long and loses nothing;
- a store outage stops it before the commit: the batch is retried until the store is
  back; a matcher outage times out a fetch, which is retried; a recorder crash loses only
  uncommitted work: on restart it reads its progress P from the store, restores its
  replica at P (its own checkpoint, else the matcher's snapshot at or before P, else an
  empty engine), replays the records up to P without writing, and goes on. Nothing is
  skipped and, because the progress moves by compare-and-set and every row has a natural
  key, nothing is written twice.

One process serves every configured shard (or one, with `--shard`), one thread per shard;
the Store is shared. SIGTERM or SIGINT stops each thread after the batch it is writing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence

import zmq

from common.config import Config, ShardConfig
from common.matcher_client import MatcherClient, MatcherTimeout
from common.recorder.checkpoint import checkpoint_path, read_checkpoint, write_checkpoint
from common.recorder.replica import Replica
from common.store import ProgressConflict, Store, StoreUnavailable, open_store
from common.store.batch import Batch

log = logging.getLogger("zmx.recorder")

MATCHER_TIMEOUT_SECONDS = 5.0
REPLAY_PAGE = 10_000
MAX_BACKOFF_SECONDS = 2.0
WARN_EVERY_SECONDS = 30.0
REPORT_EVERY_SECONDS = 10.0
BELL_HWM = 10_000


class RecorderError(Exception):
    """A condition the recorder cannot repair by waiting (a journal that does not fit the store)."""


class _Stopping(Exception):
    """The process was asked to stop while waiting for the store or the matcher."""


class _Resynced(Exception):
    """The replica was restored at another seq; drop what was in flight."""


class _Backoff:
    """Growing waits between retries, and warnings that are not repeated more than every 30 s."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.delay = 0.05
        self._warned = 0.0

    def wait(self, message: str, **extra) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_SECONDS:
            self._warned = now
            log.warning(message, extra=extra)
        if self.stop.wait(self.delay):
            raise _Stopping()
        self.delay = min(self.delay * 2, MAX_BACKOFF_SECONDS)

    def reset(self) -> None:
        self.delay = 0.05
        self._warned = 0.0


class ShardRecorder:
    """Record one shard: catch up, then follow, until `stop` is set."""

    def __init__(self, config: Config, shard: ShardConfig, store: Store, stop: threading.Event,
                 context: zmq.Context) -> None:
        self.config = config
        self.settings = config.recorder
        self.shard = shard
        self.shard_id = shard.shard_id
        self.store = store
        self.stop = stop
        self.context = context
        self.checkpoint_path = checkpoint_path(config.data_dir, shard.shard_id)
        self.failed = False
        self.replica: Replica | None = None
        self._checkpoint_seq = 0
        self._client: MatcherClient | None = None
        self._recorded = 0
        self._events = 0
        self._last_report = time.monotonic()

    # ------------------------------------------------------------------ thread body

    def run(self) -> None:
        try:
            self._run()
        except _Stopping:
            pass
        except Exception:
            self.failed = True
            log.exception("recorder stopped by an error", extra={"shard_id": self.shard_id})
            self.stop.set()
        finally:
            self._close()

    def _run(self) -> None:
        bells = self._subscribe()
        progress = self._store_call(lambda: self.store.recorder_progress(self.shard_id))
        self._restore(progress)
        log.info("recorder ready", extra={"shard_id": self.shard_id, "journal_seq": self.replica.journal_seq,
                                          "command_endpoint": self.shard.command_endpoint})
        matcher_backoff = _Backoff(self.stop)
        poller = zmq.Poller()
        for bell in bells:
            poller.register(bell, zmq.POLLIN)
        while not self.stop.is_set():
            try:
                self._pump()
                matcher_backoff.reset()
            except MatcherTimeout:
                self._reset_client()
                matcher_backoff.wait("matcher does not answer; retrying", shard_id=self.shard_id,
                                     endpoint=self.shard.command_endpoint)
                continue
            except _Resynced:
                continue
            self._report()
            self._wait_for_bell(poller, bells)
        self._checkpoint(final=True)

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
        for bell in getattr(self, "_bells", ()):
            bell.close()

    # ------------------------------------------------------------------ sockets

    def _subscribe(self) -> list[zmq.Socket]:
        bells = []
        for endpoint, prefix in ((self.shard.public_endpoint, b"md."), (self.shard.private_endpoint, b"acct.")):
            bell = self.context.socket(zmq.SUB)
            bell.setsockopt(zmq.LINGER, 0)
            bell.setsockopt(zmq.RCVHWM, BELL_HWM)
            bell.setsockopt(zmq.SUBSCRIBE, prefix)
            bell.connect(endpoint)
            bells.append(bell)
        self._bells = bells
        return bells

    def _wait_for_bell(self, poller: zmq.Poller, bells: list[zmq.Socket]) -> None:
        """Return when a PUB message arrives (after draining them all), at `poll_seconds`, or on stop.

        Every message rings the bell: reading its journal_seq would cost more than the
        fetch it might save, and a fetch with nothing new is one round trip.
        """
        deadline = time.monotonic() + self.settings.poll_seconds
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if poller.poll(int(min(remaining, 0.2) * 1000) + 1):
                for bell in bells:
                    while True:
                        try:
                            bell.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                return

    def _matcher(self) -> MatcherClient:
        if self._client is None:
            self._client = MatcherClient(self.shard.command_endpoint, timeout=MATCHER_TIMEOUT_SECONDS,
                                         context=self.context)
        return self._client

    def _reset_client(self) -> None:
        """Drop the DEALER and whatever was in flight on it (late replies are never mistaken for new ones)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _matcher_call(self, op: str, **fields):
        backoff = _Backoff(self.stop)
        while True:
            try:
                return self._matcher().request(op, **fields)
            except MatcherTimeout:
                self._reset_client()
                backoff.wait("matcher does not answer; retrying", shard_id=self.shard_id,
                             endpoint=self.shard.command_endpoint)

    def _store_call(self, call):
        backoff = _Backoff(self.stop)
        while True:
            try:
                return call()
            except StoreUnavailable as error:
                backoff.wait("store unavailable; retrying", shard_id=self.shard_id, error=str(error))

    # ------------------------------------------------------------------ restore

    def _restore(self, progress: int) -> None:
        """Rebuild the replica at journal seq `progress` without writing anything."""
        replica = None
        found = read_checkpoint(self.checkpoint_path, self.shard_id)
        if found is not None and found[0] <= progress:
            try:
                replica = Replica.from_state(found[1], found[0], self.shard_id)
                source = "checkpoint"
            except (ValueError, KeyError) as error:
                log.warning("unusable recorder checkpoint", extra={"shard_id": self.shard_id, "reason": str(error)})
        if replica is None:
            snapshot = self._matcher_call("engine_snapshot", at_most=progress)
            if snapshot["state"] is not None:
                replica = Replica.from_state(snapshot["state"].encode(), snapshot["journal_seq"], self.shard_id)
                source = "matcher snapshot"
            else:
                replica = Replica.empty(self.shard_id)
                source = "empty"
        self._checkpoint_seq = replica.journal_seq
        start = replica.journal_seq
        started = time.monotonic()
        while replica.journal_seq < progress:
            reply = self._matcher_call("journal", after=replica.journal_seq,
                                       limit=min(REPLAY_PAGE, progress - replica.journal_seq))
            if not reply["records"]:
                raise RecorderError(
                    f"shard {self.shard_id}: the store has recorded up to journal seq {progress} but the matcher's"
                    f" journal ends at {reply['last_seq']}: this store belongs to another journal"
                )
            for record in reply["records"]:
                if record["seq"] > progress:
                    break
                replica.apply(record["seq"], record["ts"], record["cmd"])
        self.replica = replica
        log.info("replica restored", extra={"shard_id": self.shard_id, "source": source, "from_seq": start,
                                            "journal_seq": progress, "replayed": progress - start,
                                            "seconds": round(time.monotonic() - started, 3)})

    # ------------------------------------------------------------------ follow

    def _pump(self) -> None:
        """Fetch, execute and write every record the matcher has beyond the replica."""
        limit = self.settings.batch_records
        matcher = self._matcher()
        in_flight = matcher.send("journal", after=self.replica.journal_seq, limit=limit)
        while not self.stop.is_set():
            reply = matcher.wait(in_flight)
            if not reply["ok"]:
                error = reply["error"]
                raise RecorderError(f"matcher refused the journal request: {error['code']}: {error['message']}")
            data = reply["data"]
            records = data["records"]
            if not records:
                return
            last = records[-1]["seq"]
            more = data["last_seq"] > last
            if more:
                # Ask for the next page now; the matcher serves it while this one is written.
                in_flight = matcher.send("journal", after=last, limit=limit)
            batch = Batch(self.shard_id, self.replica.journal_seq)
            apply = self.replica.apply
            for record in records:
                apply(record["seq"], record["ts"], record["cmd"], batch)
            self._write(batch)
            self._recorded += batch.records
            self._events += batch.events
            self._checkpoint()
            if not more:
                return

    def _write(self, batch: Batch) -> None:
        backoff = _Backoff(self.stop)
        while True:
            try:
                self.store.write_batch(batch)
                return
            except StoreUnavailable as error:
                backoff.wait("store unavailable; retrying the batch", shard_id=self.shard_id, error=str(error),
                             first_seq=batch.first_seq, last_seq=batch.last_seq)
            except ProgressConflict as conflict:
                if conflict.found == batch.last_seq:
                    return  # the commit went through; only its acknowledgement was lost
                log.warning("recorder progress moved under this recorder; restoring",
                            extra={"shard_id": self.shard_id, "expected": conflict.expected,
                                   "found": conflict.found})
                self._reset_client()
                self._restore(conflict.found or 0)
                raise _Resynced() from None

    def _checkpoint(self, final: bool = False) -> None:
        """Save the replica when `checkpoint_every_records` have passed (or at a clean stop)."""
        replica = self.replica
        if replica is None:
            return
        due = replica.journal_seq - self._checkpoint_seq
        if due <= 0 or (not final and due < self.settings.checkpoint_every_records):
            return
        started = time.monotonic()
        write_checkpoint(self.checkpoint_path, self.shard_id, replica.journal_seq, replica.state())
        self._checkpoint_seq = replica.journal_seq
        log.info("recorder checkpoint written", extra={"shard_id": self.shard_id, "journal_seq": replica.journal_seq,
                                                       "seconds": round(time.monotonic() - started, 3)})

    def _report(self) -> None:
        now = time.monotonic()
        if self._recorded and now - self._last_report >= REPORT_EVERY_SECONDS:
            log.info("recorded", extra={"shard_id": self.shard_id, "journal_seq": self.replica.journal_seq,
                                        "records": self._recorded, "events": self._events,
                                        "seconds": round(now - self._last_report, 3)})
            self._recorded = self._events = 0
            self._last_report = now


def open_store_patiently(url: str, stop: threading.Event) -> Store | None:
    """Open the store, retrying while it is unavailable; None if asked to stop meanwhile."""
    backoff = _Backoff(stop)
    while True:
        try:
            return open_store(url)
        except StoreUnavailable as error:
            try:
                backoff.wait("store unavailable; retrying", error=str(error))
            except _Stopping:
                return None


def run_recorder(config: Config, shard_ids: Sequence[int]) -> int:
    """Record the given shards until SIGINT or SIGTERM; return the exit code."""
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    store = open_store_patiently(config.effective_store_url(), stop)
    if store is None:
        return 0
    context = zmq.Context()
    recorders = [ShardRecorder(config, config.shard(shard_id), store, stop, context) for shard_id in shard_ids]
    threads = [threading.Thread(target=recorder.run, name=f"recorder-{recorder.shard_id}") for recorder in recorders]
    try:
        for thread in threads:
            thread.start()
        # Join with a timeout so the main thread keeps running Python signal handlers.
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.2)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        store.close()
        context.destroy(linger=0)
    failed = [recorder.shard_id for recorder in recorders if recorder.failed]
    log.info("recorder stopped", extra={"failed_shards": failed})
    return 1 if failed else 0
