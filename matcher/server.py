"""The matcher process: one thread, one poll loop around the Engine.

Each turn of the loop drains up to `max_batch` requests from the gateway ROUTER and the
bot ROUTER, executes them in arrival order, appends every accepted state-changing command
to the journal, commits the journal once (group commit: one fsync per batch in `batch`
mode), and only then sends the replies and publishes the updates. Nothing leaves the
process before the command that caused it is durable, so an acknowledged order survives
`kill -9`, and a snapshot reply is always consistent with the deltas already published.

Sockets (SPEC section 1):
- ROUTER `command_endpoint` for gateways, feeds and recorders (ROUTER_MANDATORY, so a
  reply to a vanished peer is counted, not silently lost);
- ROUTER `bot_endpoint` for co-located bots, CURVE-encrypted; ZAP requests are answered
  in this loop and map each registered public key to its trader account;
- PUB `public_endpoint` (topic `md.<PAIR>`) and PUB `private_endpoint` (topic
  `acct.<id>.`). PUB drops for a subscriber at its high-water mark, so a slow or absent
  subscriber never slows the matcher; subscribers detect the gap by sequence number.

Idle markets get a heartbeat carrying their current seq about once a second.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path

import orjson
import zmq
import zmq.utils.z85

from common import protocol
from common.config import Config, ShardConfig
from common.protocol import Command, ProtocolError
from common.types import RejectCode
from matcher import snapshot
from matcher.dispatch import Dispatcher
from matcher.engine import Engine
from matcher.journal import Journal

log = logging.getLogger("zmx.matcher")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
SOCKET_HWM = 200_000
# pyzmq's flags are enums, and combining them in Python costs more than a send; the
# backend's send/recv/get skip the Python wrappers of zmq.Socket (routing_id and group
# handling, unused here). Together about a microsecond per message on the hot path.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
# Snapshots are written by a forked child while the loop keeps serving (see _fork_snapshot);
# it needs fork() and prctl(PR_SET_PDEATHSIG), so elsewhere they are written in the loop.
BACKGROUND_SNAPSHOTS = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1
# Commands whose reply is the order message that their account event repeats.
_ORDER_REPLIES = frozenset({"place", "amend", "cancel"})
# Frames up to this size are read and answered with MALFORMED_FRAME when over
# `max_frame_bytes`; beyond it libzmq drops the frame and the connection before it costs
# memory (the DEALER reconnects by itself).
TRANSPORT_MAX_BYTES = 16 << 20


class Counters:
    """Plain integer counters, reported by `ping` and logged on shutdown."""

    __slots__ = ("commands", "rejects", "malformed", "unroutable", "journaled", "batches")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def load_server_keys(path: Path) -> tuple[bytes, bytes]:
    """Return the shard's CURVE (public, secret) key pair, creating it on first start."""
    if path.exists():
        secret = path.read_bytes().strip()
        if len(secret) != 40:
            raise ValueError(f"{path}: expected a 40-character Z85 CURVE secret key")
        return zmq.curve_public(secret), secret
    public, secret = zmq.curve_keypair()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(secret)
        os.fchmod(handle.fileno(), 0o600)
    os.replace(temporary, path)
    path.with_suffix(".pub").write_bytes(public)
    return public, secret


def recover(journal: Journal, shard_id: int, max_open_orders: int) -> Engine:
    """Rebuild the engine from the newest snapshot plus every journal record after it."""
    latest = journal.latest_snapshot()
    if latest is None:
        engine, after = Engine(shard_id, max_open_orders), 0
    else:
        after, payload = latest
        engine = snapshot.decode(payload)
        engine.max_open_orders = max_open_orders
        log.info("loaded snapshot", extra={"journal_seq": after})
    dispatcher = Dispatcher(engine, replies=False)
    started = time.monotonic()
    replayed = 0

    def progress(count: int) -> None:
        log.info("replaying journal", extra={"records": count})

    for _, payload in journal.records(after, progress=progress):
        record = orjson.loads(payload)
        command = protocol.command_from_json(record["cmd"])
        _, reject = dispatcher.execute(command, record["ts"])
        if reject is not None:
            raise RuntimeError(f"journaled command rejected on replay: {command!r}: {reject!r}")
        replayed += 1
    log.info(
        "recovered",
        extra={"snapshot_seq": after, "replayed": replayed, "seconds": round(time.monotonic() - started, 3),
               "journal_seq": journal.last_seq},
    )
    return engine


class MatcherServer:
    """Own the sockets, the journal and the engine of one shard; run the poll loop."""

    def __init__(self, config: Config, shard: ShardConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.shard = shard
        self.settings = config.matcher
        # A context of our own: the ZAP endpoint is per context, and tests run several shards.
        self._owns_context = context is None
        self.context = context or zmq.Context()
        shard_dir = config.shard_dir(shard.shard_id)
        self.journal = Journal(shard_dir / "journal", fsync=config.journal.fsync,
                               segment_bytes=config.journal.segment_bytes)
        self.engine = recover(self.journal, shard.shard_id, self.settings.max_open_orders_per_account)
        self.dispatcher = Dispatcher(self.engine)
        self.counters = Counters()
        self.public_key, secret_key = load_server_keys(config.curve_secret_key_file(shard.shard_id))
        self._running = False
        # account -> {peer identity: the CURVE key it authenticated with}
        self._bot_peers: dict[int, dict[bytes, str]] = {}
        self._last_publish: dict[str, float] = {}
        self._commands_since_snapshot = 0
        self._last_snapshot = time.monotonic()
        # (pid, journal seq, monotonic start) of the child writing a snapshot, if any.
        self._snapshot_child: tuple[int, int, float] | None = None
        self._outbox: list[tuple[zmq.Socket, list[bytes]]] = []
        # PUB topics by pair (public) and by account id (private), encoded once.
        self._topics: dict[str | int, bytes] = {}
        self._open_sockets(secret_key)

    # ---------------------------------------------------------------- sockets

    def _router(self) -> zmq.Socket:
        socket = self.context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.SNDHWM, SOCKET_HWM)
        socket.setsockopt(zmq.RCVHWM, SOCKET_HWM)
        socket.setsockopt(zmq.MAXMSGSIZE, TRANSPORT_MAX_BYTES)
        socket.setsockopt(zmq.LINGER, 1000)
        return socket

    def _open_sockets(self, secret_key: bytes) -> None:
        context, shard = self.context, self.shard
        # The ZAP handler must be bound before any CURVE socket binds.
        self.zap = context.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind(ZAP_ENDPOINT)
        self.commands = self._router()
        self.commands.bind(shard.command_endpoint)
        self.bots = self._router()
        self.bots.setsockopt(zmq.CURVE_SERVER, 1)
        self.bots.setsockopt(zmq.CURVE_SECRETKEY, secret_key)
        self.bots.setsockopt(zmq.ZAP_DOMAIN, b"zmx-bots")
        self.bots.bind(shard.bot_endpoint)
        self.public = context.socket(zmq.PUB)
        self.public.setsockopt(zmq.SNDHWM, SOCKET_HWM)
        self.public.setsockopt(zmq.LINGER, 1000)
        self.public.bind(shard.public_endpoint)
        self.private = context.socket(zmq.PUB)
        self.private.setsockopt(zmq.SNDHWM, SOCKET_HWM)
        self.private.setsockopt(zmq.LINGER, 1000)
        self.private.bind(shard.private_endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.commands, zmq.POLLIN)
        self.poller.register(self.bots, zmq.POLLIN)
        self.poller.register(self.zap, zmq.POLLIN)

    def close(self) -> None:
        self.journal.close()
        for socket in (self.commands, self.bots, self.public, self.private, self.zap):
            socket.close()
        if self._owns_context:
            self.context.term()

    # ---------------------------------------------------------------- loop

    def stop(self) -> None:
        self._running = False

    def serve_forever(self) -> None:
        """Run until `stop()`; flush the journal on the way out."""
        self._running = True
        heartbeat = self.settings.heartbeat_seconds
        poll_ms = max(1, int(heartbeat * 1000 / 4))
        log.info("matcher ready", extra={"shard_id": self.shard.shard_id, **self.shard.endpoints,
                                         "bot_public_key": self.public_key.decode()})
        gc.collect()
        gc.freeze()  # the recovered state: see _maybe_snapshot
        try:
            while self._running:
                events = dict(self.poller.poll(poll_ms))
                if self.zap in events:
                    self._answer_zap()
                commands_ready, bots_ready = self.commands in events, self.bots in events
                if commands_ready or bots_ready:
                    self._run_batch(commands_ready, bots_ready)
                self._heartbeat(heartbeat)
                self._maybe_snapshot()
        finally:
            self.journal.commit()
            if self._snapshot_child is not None:
                self._reap_snapshot(block=True)  # a clean stop leaves the snapshot complete
            log.info("matcher stopped", extra=self.counters.as_dict())

    def _run_batch(self, commands_ready: bool = True, bots_ready: bool = True) -> None:
        """Drain, execute, commit once, then send: the group-commit turn of the loop."""
        budget = self.settings.max_batch
        # Read only the sockets poll() found readable, alternating between them, and drop a
        # socket from this turn at its first EAGAIN: pyzmq raises it as an exception, which
        # costs several microseconds, so it must not happen once per command.
        sources = [is_bot for is_bot, ready in ((False, commands_ready), (True, bots_ready)) if ready]
        receive, handle = self._receive, self._handle
        while budget > 0 and sources:
            for is_bot in sources[:]:
                try:
                    frames = receive(is_bot)
                except zmq.Again:
                    sources.remove(is_bot)
                    continue
                budget -= 1
                handle(frames, is_bot)
        self.counters.batches += 1
        self.journal.commit()
        self._flush()

    def _receive(self, is_bot: bool) -> list:
        """Return one ROUTER message: bytes (commands) or zmq.Frames (bots: the key is frame metadata).

        Raise zmq.Again if there is none. A ROUTER message is the peer's identity and at least
        one more frame, and a multipart message arrives whole, so only the first recv can fail.
        """
        if is_bot:
            socket = self.bots
            frame = _recv(socket, _NOBLOCK, False)
            frames = [frame]
            while frame.more:
                frame = _recv(socket, _NOBLOCK, False)
                frames.append(frame)
            return frames
        socket = self.commands
        frames = [_recv(socket, _NOBLOCK), _recv(socket, _NOBLOCK)]
        while _get(socket, _RCVMORE):
            frames.append(_recv(socket, _NOBLOCK))
        return frames

    def _flush(self) -> None:
        for socket, frames in self._outbox:
            try:
                if len(frames) == 2:
                    # libzmq accepts the rest of a multipart message once it has accepted the
                    # first frame, so a failure here never leaves half a message queued.
                    _send(socket, frames[0], _SNDMORE_NOBLOCK)
                    _send(socket, frames[1], _NOBLOCK)
                else:
                    socket.send_multipart(frames, _NOBLOCK)
            except zmq.ZMQError as error:
                # EHOSTUNREACH: the peer is gone; EAGAIN: its queue is full. Either way the
                # command itself stands (it is journaled); the peer can query it.
                self.counters.unroutable += 1
                if socket is self.bots and error.errno == zmq.EHOSTUNREACH:
                    self._forget_bot_peer(frames[0])
        self._outbox.clear()

    def _handle(self, frames: list, is_bot: bool) -> None:
        self.counters.commands += 1
        if is_bot:
            identity = frames[0].bytes
            key = self._bot_key(frames[-1])
            # Looked up on every request, so revoking a key also stops its open connections.
            account_id = self.engine.bot_keys.get(key) if key is not None else None
            frames = [identity] + [frame.bytes for frame in frames[1:]]
            socket = self.bots
        else:
            account_id = None
            socket = self.commands
        if len(frames) != 2:
            self.counters.malformed += 1
            self._reply_error(socket, frames[0], None, RejectCode.MALFORMED_FRAME,
                              f"expected exactly one frame after the identity, got {len(frames) - 1}")
            return
        identity, body = frames
        if len(body) > self.settings.max_frame_bytes:
            self.counters.malformed += 1
            self._reply_error(socket, identity, None, RejectCode.MALFORMED_FRAME,
                              f"frame larger than {self.settings.max_frame_bytes} bytes")
            return
        try:
            command = protocol.decode_command(body, bot=is_bot)
        except ProtocolError as error:
            self.counters.malformed += 1
            self._reply_error(socket, identity, error.request_id, error.code, error.message, error.details)
            return
        if is_bot:
            claimed = command.fields.get("account_id", account_id)
            if account_id is None or claimed != account_id:
                self._reply_error(socket, identity, command.request_id, RejectCode.FORBIDDEN,
                                  "a bot acts only on its own account")
                return
            if "account_id" in protocol.COMMANDS[command.op]:
                command.fields["account_id"] = account_id
            self._bot_peers.setdefault(account_id, {})[identity] = key
        self.execute(command, socket, identity)

    def execute(self, command: Command, socket: zmq.Socket | None, identity: bytes | None) -> None:
        """Execute one command; journal it if it changed state; queue its reply and updates."""
        ts = time.time_ns()
        if command.op == "create_market" and not self._owns(command.fields["pair"]):
            self.counters.rejects += 1
            if socket is not None:
                self._reply_error(socket, identity, command.request_id, RejectCode.FORBIDDEN,
                                  f"shard {self.shard.shard_id} is not configured to own {command.fields['pair']}")
            return
        if command.op in protocol.SERVER_OPS:
            data = self._journal_op(command)
            if socket is not None:
                self._outbox.append((socket, [identity, protocol.encode_ok(command.request_id, data)]))
            return
        data, reject = self.dispatcher.execute(command, ts)
        if reject is not None:
            self.counters.rejects += 1
            if socket is not None:
                self._reply_error(socket, identity, command.request_id, reject.code, reject.message, reject.details)
            return
        if command.op in protocol.MUTATING:
            journal_seq = self.journal.append(orjson.dumps({"ts": ts, "cmd": command.to_json()}))
            self.counters.journaled += 1
            self._commands_since_snapshot += 1
            self._queue_updates(journal_seq, data if command.op in _ORDER_REPLIES else None)
        elif command.op == "ping":
            data["journal_seq"] = self.journal.last_seq
            data["counters"] = self.counters.as_dict()
        if socket is not None:
            self._outbox.append((socket, [identity, protocol.encode_ok(command.request_id, data)]))

    def _journal_op(self, command: Command) -> dict:
        """Serve the committed journal or a snapshot to a replica (the recorder), untouched.

        Payloads are embedded as they are on disk: a record is `{"ts":..,"cmd":..}`, so
        splicing `"seq"` in front makes the reply's record object without re-encoding it.
        """
        fields = command.fields
        if command.op == "journal":
            limit = fields.get("limit", protocol.DEFAULT_JOURNAL_READ)
            records = self.journal.read(fields["after"], limit)
            return {"last_seq": self.journal.last_seq,
                    "records": [orjson.Fragment(b'{"seq":%d,%s' % (seq, payload[1:])) for seq, payload in records]}
        found = self.journal.snapshot_at_most(fields.get("at_most", self.journal.last_seq))
        if found is None:
            return {"journal_seq": 0, "state": None}
        # The state travels as JSON text, not an object: orjson would turn its integers
        # beyond 64 bits into floats; matcher.snapshot.decode parses it exactly.
        return {"journal_seq": found[0], "state": found[1].decode()}

    def _queue_updates(self, journal_seq: int, reply: dict | None = None) -> None:
        """Queue the command's PUB messages; `reply` is its order reply, reused in the account event."""
        engine = self.engine
        markets, assets, outbox = engine.markets, engine.assets, self._outbox
        topics = self._topics
        now = time.monotonic()
        for update in engine.public:
            market = markets[update.market]
            body = protocol.public_update_message(update, market, journal_seq)
            topic = topics.get(update.market)
            if topic is None:
                topic = topics[update.market] = protocol.public_topic(update.market)
            outbox.append((self.public, [topic, body]))
            self._last_publish[update.market] = now
        for update in engine.private:
            body = protocol.private_update_message(update, markets, assets, journal_seq, reply)
            topic = topics.get(update.account_id)
            if topic is None:
                topic = topics[update.account_id] = protocol.private_topic(update.account_id)
            outbox.append((self.private, [topic, body]))
            for peer, key in self._bot_peers.get(update.account_id, {}).items():
                if engine.bot_keys.get(key) == update.account_id:  # nothing more once the key is revoked
                    outbox.append((self.bots, [peer, body]))

    def _owns(self, pair: str) -> bool:
        return pair in self.shard.markets or "*" in self.shard.markets

    def _reply_error(self, socket, identity, request_id, code: RejectCode, message: str, details=None) -> None:
        self._outbox.append((socket, [identity, protocol.encode_error(request_id, code, message, details)]))

    # ---------------------------------------------------------------- bots and ZAP

    def _bot_key(self, frame: zmq.Frame) -> str | None:
        """Return the Z85 CURVE key the peer authenticated with (our ZAP handler's User-Id)."""
        try:
            return frame.get("User-Id") or None
        except zmq.ZMQError:
            return None

    def _forget_bot_peer(self, identity: bytes) -> None:
        for peers in self._bot_peers.values():
            peers.pop(identity, None)

    def _answer_zap(self) -> None:
        """Answer one ZAP request (RFC 27): a registered CURVE key is accepted with itself as User-Id."""
        frames = self.zap.recv_multipart()
        if len(frames) < 6:
            self.zap.send_multipart([b"1.0", frames[1] if len(frames) > 1 else b"", b"400", b"bad request", b"", b""])
            return
        version, request_id, domain, _address, _identity, mechanism = frames[:6]
        credentials = frames[6:]
        key = account_id = None
        if version == b"1.0" and mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32:
            key = zmq.utils.z85.encode(credentials[0]).decode()
            account_id = self.engine.bot_keys.get(key)
        if account_id is None:
            self.zap.send_multipart([b"1.0", request_id, b"400", b"unregistered key", b"", b""])
            return
        self.zap.send_multipart([b"1.0", request_id, b"200", b"OK", key.encode(), b""])

    # ---------------------------------------------------------------- heartbeats and snapshots

    def _heartbeat(self, interval: float) -> None:
        now = time.monotonic()
        last = self._last_publish
        ts = None
        for pair, market in self.engine.markets.items():
            if now - last.get(pair, 0.0) >= interval:
                ts = ts or time.time_ns()
                try:
                    self.public.send_multipart([protocol.public_topic(pair), protocol.heartbeat_message(pair, market.seq, ts)],
                                               zmq.NOBLOCK)
                except zmq.Again:
                    self.counters.unroutable += 1
                last[pair] = now

    def _maybe_snapshot(self) -> None:
        if self._snapshot_child is not None:
            self._reap_snapshot(block=False)
            if self._snapshot_child is not None:
                return  # one at a time: a snapshot falling due meanwhile waits for this one
        settings = self.config.journal
        if not self._commands_since_snapshot:
            return
        due = self._commands_since_snapshot >= settings.snapshot_every_commands or (
            time.monotonic() - self._last_snapshot >= settings.snapshot_every_seconds
        )
        if not due:
            return
        # The engine's state is long-lived and makes no reference cycles (gc.collect() found
        # none after 144,000 benchmark commands, rejects included), yet every full collection
        # walked all of it: up to 240 ms inside a batch with ~130,000 resting orders.
        # Freezing what is alive at start-up and at each snapshot leaves the collector what
        # was allocated since (docs/benchmarks.md). Only a young collection runs first, so
        # the pause stays short: a garbage cycle already in the oldest generation would be
        # kept, and there are none. Frozen pages are also not copied by the snapshot child.
        gc.collect(1)
        gc.freeze()
        if BACKGROUND_SNAPSHOTS:
            self._fork_snapshot()
        else:
            self.take_snapshot()

    def _fork_snapshot(self) -> None:
        """Start a child that writes the snapshot; the loop pauses only for fork() itself.

        Encoding and writing the engine took about a second at 100,000 commands of the
        benchmark flow (~45,000 resting orders and the 100,000 recently closed ones it
        keeps), a second in which nothing was answered. The child sees the engine as it was at fork()
        (copy-on-write), writes the snapshot at the journal's last seq and exits. The journal
        is rotated at once: segments never depend on a snapshot, and recovery takes the
        newest snapshot that exists plus the records after it, so a snapshot that is late or
        never written costs replay time only. The child dies with the matcher
        (PR_SET_PDEATHSIG), so a killed matcher never leaves it holding the journal's lock
        or the listening ports.
        """
        started = time.monotonic()
        self.journal.commit()
        seq = self.journal.last_seq
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._write_snapshot_and_exit(seq, parent)
        self._snapshot_child = (pid, seq, started)
        self.journal.rotate()
        self._commands_since_snapshot = 0
        self._last_snapshot = time.monotonic()

    def _write_snapshot_and_exit(self, seq: int, parent: int) -> None:
        """In the forked child: write the snapshot at `seq`, then leave without any cleanup."""
        code = 1
        try:
            gc.disable()  # the child lives for one encode; collecting would only copy pages
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
            if os.getppid() == parent:  # otherwise the matcher died before prctl took effect
                self.journal.write_snapshot(seq, snapshot.encode(self.engine))
                code = 0
        except BaseException:
            log.exception("snapshot child failed", extra={"journal_seq": seq})
        finally:
            # No atexit handlers, no socket or journal cleanup: they belong to the matcher.
            os._exit(code)

    def _reap_snapshot(self, block: bool) -> None:
        """Collect the snapshot child's exit status if it has finished (or wait for it)."""
        pid, seq, started = self._snapshot_child
        try:
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done, status = pid, None
        if done == 0:
            return
        self._snapshot_child = None
        code = None if status is None else os.waitstatus_to_exitcode(status)
        if code == 0:
            log.info("snapshot written", extra={"journal_seq": seq, "seconds": round(time.monotonic() - started, 3)})
        else:
            # The journal holds every command; the next snapshot is tried when due again.
            log.error("snapshot failed", extra={"journal_seq": seq, "exit_code": code})

    def take_snapshot(self) -> None:
        """Write the engine's state at the journal's last seq and start a new segment."""
        started = time.monotonic()
        self.journal.commit()
        seq = self.journal.last_seq
        self.journal.write_snapshot(seq, snapshot.encode(self.engine))
        self.journal.rotate()
        self._commands_since_snapshot = 0
        self._last_snapshot = time.monotonic()
        log.info("snapshot written", extra={"journal_seq": seq, "seconds": round(self._last_snapshot - started, 3)})


def run_matcher(config: Config, shard_id: int = 0) -> None:
    """Run one matcher shard in the foreground until SIGINT or SIGTERM."""
    shard = config.shard(shard_id)
    server = MatcherServer(config, shard)

    def stop(signum, frame):
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.close()
