"""The demo that `zmx up` sets up: one market, a trader for the newcomer, two bots.

Everything is idempotent, so a second `zmx up` on the same data directory finds it all
in place and starts the bots again:

- the market `DEMO_PAIR` (created if missing);
- traders `demo`, `demo-market-maker` and `demo-taker`, each funded once when created;
  the newcomer's API key and secret are kept in `<data_dir>/demo/demo.json` (mode 0600)
  so the banner can show them on every start (the store keeps only the key's hash);
- a CURVE key file per bot in `<data_dir>/demo/` (`gateway.keys.ensure_bot_key_file`),
  registered to its trader on every shard.

It goes through `gateway.admin.Admin`, the code behind the admin API and `zmx admin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from common.config import Config
from common.files import write_private_file
from common.types import RejectCode

DEMO_PAIR = "BTC-USDT"
DEMO_FAIR_PRICE = "30000.00"  # where the market maker quotes until the market has traded
DEMO_MARKET = {"pair": DEMO_PAIR, "tick_size": "0.01", "lot_size": "0.00001", "min_notional": "5",
               "maker_fee_bps": 2, "taker_fee_bps": 5}
# username -> what it is funded with when created
DEMO_TRADERS = {
    "demo": {"USDT": "100000", "BTC": "2"},
    "demo-market-maker": {"USDT": "3000000", "BTC": "100"},
    "demo-taker": {"USDT": "200000", "BTC": "5"},
}


class DemoError(Exception):
    """The demo could not be set up (a shard refused, the store is unreachable, ...)."""


@dataclass(frozen=True)
class Demo:
    pair: str
    trader: dict[str, Any]  # trader_id, username, api_key, api_secret
    market_maker_key_file: Path
    taker_key_file: Path

    def bot_commands(self) -> dict[str, list[str]]:
        """The `zmx` arguments of each demo bot, by child name."""
        return {
            "bot-market-maker": ["bot", "market-maker", "--key-file", str(self.market_maker_key_file),
                                 "--pair", self.pair, "--fair-price", DEMO_FAIR_PRICE, "--quantity", "0.01000"],
            "bot-taker": ["bot", "taker", "--key-file", str(self.taker_key_file), "--pair", self.pair],
        }


def ensure_demo(config: Config) -> Demo:
    """Create whatever of the demo is missing and return what the banner and the bots need."""
    from common.store import StoreError, open_store
    from gateway import keys
    from gateway.admin import Admin
    from gateway.engine_client import EngineClient
    from gateway.envelope import ApiError
    from gateway.routing import Shards

    directory = config.data_dir / "demo"
    directory.mkdir(parents=True, exist_ok=True)
    store = open_store(config.effective_store_url())
    engine = EngineClient({shard.shard_id: shard.command_endpoint for shard in config.shards},
                          config.gateway.matcher_timeout_seconds)
    try:
        admin = Admin(engine, store, Shards(config), keys.load_master_secret(config))
        _ensure_market(admin)
        traders = {name: _ensure_trader(admin, directory / f"{name}.json", name, funds)
                   for name, funds in DEMO_TRADERS.items()}
        key_files = {}
        for name in ("demo-market-maker", "demo-taker"):
            path = key_files[name] = directory / f"{name}.key"
            key = keys.ensure_bot_key_file(path, traders[name]["trader_id"])
            admin.register_bot_key(traders[name]["trader_id"], key.public_key)
    except ApiError as error:
        raise DemoError(f"{error.code.name}: {error.message}") from None
    except (StoreError, ValueError) as error:
        raise DemoError(str(error)) from None
    finally:
        engine.close()
        store.close()
    return Demo(DEMO_PAIR, traders["demo"], key_files["demo-market-maker"], key_files["demo-taker"])


def _ensure_market(admin) -> None:
    from gateway.envelope import ApiError
    from gateway.schemas import CREATE_MARKET

    try:
        admin.create_market(CREATE_MARKET.check(dict(DEMO_MARKET)))
    except ApiError as error:
        if error.code is not RejectCode.ALREADY_EXISTS:
            raise


def _ensure_trader(admin, path: Path, username: str, funds: dict[str, str]) -> dict[str, Any]:
    """Return the trader's saved credentials; create and fund it (or re-key it) when needed.

    The file is written before the deposits with `funded: false` and rewritten after them,
    so an interrupted run funds the trader on the next one, and never twice.
    """
    from common.store import DuplicateError
    from gateway.schemas import DEPOSIT

    try:
        saved = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        saved = None
    except orjson.JSONDecodeError:
        raise ValueError(f"{path} is not a demo trader file; remove it to make a new key") from None
    if saved is None:
        try:
            trader = admin.store.create_trader(username)
            funded = False
        except DuplicateError:  # created by an earlier run whose file is gone: give it a new key
            trader = _find_trader(admin, username)
            funded = True
        saved = {**admin.rotate_key(trader["trader_id"]), "username": username, "funded": funded}
        write_private_file(path, orjson.dumps(saved, option=orjson.OPT_INDENT_2))
    if not saved["funded"]:
        for asset, amount in funds.items():
            admin.deposit(DEPOSIT.check({"trader_id": saved["trader_id"], "asset": asset, "amount": amount}))
        saved["funded"] = True
        write_private_file(path, orjson.dumps(saved, option=orjson.OPT_INDENT_2))
    return saved


def _find_trader(admin, username: str) -> dict[str, Any]:
    cursor = None
    while True:
        listing = admin.store.list_traders(1000, cursor)
        for trader in listing.items:
            if trader["username"] == username:
                return trader
        if not listing.has_more:
            raise ValueError(f"trader {username} exists but cannot be found")
        cursor = listing.next_cursor

