"""What every demo bot does around its strategy: start up patiently, stop cleanly, do exact price math.

A bot runs as a supervised child of `zmx up`, possibly started before its matcher has
written its CURVE key, before the market exists or before its key is registered; it waits
for each (logging why) instead of crashing. SIGTERM and SIGINT set a flag that the
strategy loop checks at least every `poll` interval; the strategy then cancels its orders
and returns.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Protocol

from common.config import Config, ConfigError
from common.errors import AuthenticationError, ConnectionFailed, OutcomeUnknown
from common.sdk.bot import BotClient, BotKey, bot_endpoints, server_public_key_file

STARTUP_LOG_EVERY = 10.0  # seconds between "still waiting" lines
STARTUP_POLL = 0.5


class StopFlag:
    """Set by SIGTERM or SIGINT; the bot's loop checks it."""

    def __init__(self) -> None:
        self.stopping = False
        self.signal_name: str | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self.signal_name = signal.Signals(signum).name

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early once stopping (for the startup waits only)."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, deadline - time.monotonic()))


@dataclass(frozen=True)
class Market:
    """A market's rules as exact Decimals (from the matcher's `markets` answer)."""

    pair: str
    base: str
    quote: str
    tick: Decimal
    lot: Decimal
    min_quantity: Decimal
    min_notional: Decimal
    taker_fee_bps: int

    @classmethod
    def from_wire(cls, market: dict[str, Any]) -> "Market":
        return cls(market["pair"], market["base"], market["quote"], Decimal(market["tick_size"]),
                   Decimal(market["lot_size"]), Decimal(market["min_quantity"]), Decimal(market["min_notional"]),
                   market["taker_fee_bps"])

    def price_down(self, price: Decimal) -> Decimal:
        """The highest tick at or below `price` (at least one tick)."""
        return max(self.tick, (price / self.tick).to_integral_value(ROUND_FLOOR) * self.tick).quantize(self.tick)

    def price_up(self, price: Decimal) -> Decimal:
        """The lowest tick at or above `price`."""
        return max(self.tick, (price / self.tick).to_integral_value(ROUND_CEILING) * self.tick).quantize(self.tick)

    def lots_down(self, quantity: Decimal) -> Decimal:
        """The largest lot multiple at or below `quantity` (zero if none)."""
        return ((quantity / self.lot).to_integral_value(ROUND_FLOOR) * self.lot).quantize(self.lot)

    def lots_up(self, quantity: Decimal) -> Decimal:
        return ((quantity / self.lot).to_integral_value(ROUND_CEILING) * self.lot).quantize(self.lot)

    def tradable(self, price: Decimal, quantity: Decimal) -> bool:
        """Whether an order of this size passes the market's minimum quantity and notional."""
        return quantity > 0 and quantity >= self.min_quantity and price * quantity >= self.min_notional

    def default_quantity(self, price: Decimal, lots: int) -> Decimal:
        """`lots` lots, or more when the market's minimums need more at `price`."""
        wanted = max(self.lot * lots, self.min_quantity, self.min_notional * 2 / price)
        return self.lots_up(wanted)


def balances_by_asset(balances: list[dict[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """Return `{asset: {"available", "locked", "total"}}` as Decimals."""
    return {balance["asset"]: {name: Decimal(balance[name]) for name in ("available", "locked", "total")}
            for balance in balances}


def open_bot(config: Config, key_file: str, pair: str, stop: StopFlag, log: logging.Logger,
             timeout: float = 5.0) -> BotClient | None:
    """Return a connected BotClient for `pair`'s shard, waiting for whatever is missing; None if stopped first.

    Raises BotKeyError for an unusable key file and ConfigError for a pair no shard owns.
    """
    key = BotKey.load(key_file)
    shard = config.shard_for_market(pair)
    key_path = server_public_key_file(config, shard.shard_id)
    waiting_since = time.monotonic()
    last_log = -STARTUP_LOG_EVERY
    while not stop.stopping:
        try:
            client = BotClient.for_pair(config, key, pair, timeout=timeout, connect_timeout=STARTUP_POLL * 4)
            break
        except ConfigError:
            last_log = _waiting(log, last_log, waiting_since, f"waiting for matcher shard {shard.shard_id} "
                                f"to write its CURVE key to {key_path}")
            stop.sleep(STARTUP_POLL)
    else:
        return None
    endpoints = bot_endpoints(config, pair)
    while not stop.stopping:
        try:
            client.connect()
            log.info("connected", extra={"bot_endpoint": endpoints.bot_endpoint, "account_id": key.account_id,
                                         "public_key": key.public_key})
            return client
        except AuthenticationError as error:
            last_log = _waiting(log, last_log, waiting_since, str(error.message), public_key=key.public_key)
            stop.sleep(STARTUP_POLL * 4)
            client.reconnect()  # libzmq never retries a refused key by itself
        except (ConnectionFailed, OutcomeUnknown) as error:
            last_log = _waiting(log, last_log, waiting_since, f"waiting for the matcher at "
                                f"{endpoints.bot_endpoint}: {error.message}")
    client.close()
    return None


def wait_for_market(client: BotClient, pair: str, stop: StopFlag, log: logging.Logger) -> Market | None:
    """Return the market once the shard has it; None if stopped first."""
    waiting_since = time.monotonic()
    last_log = -STARTUP_LOG_EVERY
    while not stop.stopping:
        try:
            for market in client.markets()["markets"]:
                if market["pair"] == pair:
                    return Market.from_wire(market)
        except (ConnectionFailed, OutcomeUnknown):
            pass
        last_log = _waiting(log, last_log, waiting_since, f"waiting for the market {pair} to be created")
        stop.sleep(STARTUP_POLL)
    return None


def _waiting(log: logging.Logger, last_log: float, since: float, message: str, **extra: Any) -> float:
    """Log a waiting line at most every STARTUP_LOG_EVERY seconds; return when the last one was."""
    now = time.monotonic()
    if now - last_log < STARTUP_LOG_EVERY:
        return last_log
    log.warning(message, extra={"waited_seconds": round(now - since, 1), **extra})
    return now


class Strategy(Protocol):
    """A bot's loop: made from a connected client and its market, run until `stop` is set."""

    def __init__(self, client: BotClient, market: Market, settings: Any, stop: StopFlag) -> None: ...

    def run(self) -> None: ...


def run_strategy(config: Config, key_file: str, settings: Any, strategy: type[Strategy], log: logging.Logger) -> int:
    """Connect, wait for `settings.pair`, run the strategy until SIGTERM or SIGINT; return the exit code."""
    stop = StopFlag()
    stop.install()
    client = open_bot(config, key_file, settings.pair, stop, log)
    if client is None:
        return 0
    try:
        market = wait_for_market(client, settings.pair, stop, log)
        if market is not None:
            strategy(client, market, settings, stop).run()
    finally:
        client.close()
    return 0
