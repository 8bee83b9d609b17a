"""`zmx admin ...`: the admin API's actions from the command line.

The command talks to the history store and the matcher shards directly, through the same
`gateway.admin.Admin` the REST admin API uses, so it works whether or not a gateway is
running (bootstrap, scripts, recovery). Each command prints its result as JSON on stdout;
a refusal prints `zmx admin: CODE: message` on stderr and exits with 1.

    zmx admin token
    zmx admin create-trader USERNAME
    zmx admin traders [--limit N] [--cursor C]
    zmx admin rotate-key TRADER_ID
    zmx admin revoke-keys TRADER_ID
    zmx admin deposit TRADER_ID ASSET AMOUNT [--shard N]
    zmx admin create-market PAIR --tick-size T --lot-size L [--min-quantity Q] [--min-notional N]
                            [--maker-fee-bps M] [--taker-fee-bps T] [--base-decimals B] [--quote-decimals Q]
    zmx admin halt PAIR
    zmx admin resume PAIR
    zmx admin register-bot-key TRADER_ID (--out FILE | --public-key KEY)
    zmx admin revoke-bot-key KEY
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

EXIT_REFUSED = 1


def add_admin_parser(commands: argparse._SubParsersAction) -> None:
    """Add `admin` and its subcommands to the `zmx` parser."""
    admin = commands.add_parser("admin", help="administer traders, keys, deposits and markets")
    actions = admin.add_subparsers(title="actions", metavar="ACTION", required=True, dest="action")

    actions.add_parser("token", help="print the admin token of the REST admin API")
    create = actions.add_parser("create-trader", help="create a trader and its API key (secret shown once)")
    create.add_argument("username")
    listing = actions.add_parser("traders", help="list traders, oldest first")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--cursor", default=None)
    for name, help_text in (("rotate-key", "give a trader a new key; the old one stops working"),
                            ("revoke-keys", "revoke every key of a trader")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("trader_id", type=int)
    deposit = actions.add_parser("deposit", help="credit a deposit to a trader")
    deposit.add_argument("trader_id", type=int)
    deposit.add_argument("asset")
    deposit.add_argument("amount")
    deposit.add_argument("--shard", type=int, default=None, dest="shard_id")
    market = actions.add_parser("create-market", help="create a market on the shard that owns it")
    market.add_argument("pair")
    market.add_argument("--tick-size", required=True)
    market.add_argument("--lot-size", required=True)
    market.add_argument("--min-quantity")
    market.add_argument("--min-notional")
    market.add_argument("--maker-fee-bps", type=int)
    market.add_argument("--taker-fee-bps", type=int)
    market.add_argument("--base-decimals", type=int)
    market.add_argument("--quote-decimals", type=int)
    for name in ("halt", "resume"):
        action = actions.add_parser(name, help=f"{name} a market")
        action.add_argument("pair")
    bot_key = actions.add_parser(
        "register-bot-key", help="register a co-located bot's CURVE public key to a trader on every shard")
    bot_key.add_argument("trader_id", type=int)
    source = bot_key.add_mutually_exclusive_group(required=True)
    source.add_argument("--out", metavar="FILE",
                        help="key file to register; created with a new key pair (mode 0600) if missing")
    source.add_argument("--public-key", metavar="KEY", help="a 40-character Z85 public key made elsewhere")
    revoke = actions.add_parser("revoke-bot-key", help="revoke a bot key; its connections are refused from then on")
    revoke.add_argument("public_key", metavar="KEY")


def run_admin(config, arguments: argparse.Namespace) -> int:
    """Run one admin action; print its result as JSON."""
    from gateway import keys

    if arguments.action == "token":
        token = keys.configured_admin_token(config)
        if token is None:
            print("zmx admin: no admin token: set admin_token or start `zmx gateway` once", file=sys.stderr)
            return EXIT_REFUSED
        print(token)
        return 0
    from common.store import open_store
    from gateway.admin import Admin
    from gateway.engine_client import EngineClient
    from gateway.envelope import ApiError
    from gateway.routing import Shards

    store = open_store(config.effective_store_url())
    engine = EngineClient({shard.shard_id: shard.command_endpoint for shard in config.shards},
                          config.gateway.matcher_timeout_seconds)
    try:
        admin = Admin(engine, store, Shards(config), keys.load_master_secret(config))
        result = _dispatch(admin, arguments)
    except ApiError as error:
        print(f"zmx admin: {error.code.name}: {error.message}", file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as error:  # an unusable key file
        print(f"zmx admin: {error}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        engine.close()
        store.close()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


def _dispatch(admin, arguments: argparse.Namespace) -> Any:
    from gateway import schemas
    from gateway.envelope import invalid_field

    action = arguments.action
    if action == "create-trader":
        return admin.create_trader(schemas.CREATE_TRADER.check({"username": arguments.username}))
    if action == "traders":
        if not 1 <= arguments.limit <= schemas.LIMIT.schema["maximum"]:
            raise invalid_field("limit", f"limit must be in 1..{schemas.LIMIT.schema['maximum']}")
        return admin.list_traders(arguments.limit, arguments.cursor)
    if action == "rotate-key":
        return admin.rotate_key(schemas.trader_id_from_path(str(arguments.trader_id)))
    if action == "revoke-keys":
        return admin.revoke_keys(schemas.trader_id_from_path(str(arguments.trader_id)))
    if action == "deposit":
        return admin.deposit(schemas.DEPOSIT.check({
            "trader_id": arguments.trader_id, "asset": arguments.asset, "amount": arguments.amount,
            "shard_id": arguments.shard_id}))
    if action == "create-market":
        body = {"pair": arguments.pair, "tick_size": arguments.tick_size, "lot_size": arguments.lot_size,
                "min_quantity": arguments.min_quantity, "min_notional": arguments.min_notional,
                "maker_fee_bps": arguments.maker_fee_bps, "taker_fee_bps": arguments.taker_fee_bps,
                "base_decimals": arguments.base_decimals, "quote_decimals": arguments.quote_decimals}
        return admin.create_market(schemas.CREATE_MARKET.check({k: v for k, v in body.items() if v is not None}))
    if action in ("halt", "resume"):
        return admin.set_halted(schemas.pair_from_path(arguments.pair), action == "halt")
    if action == "register-bot-key":
        trader_id = schemas.trader_id_from_path(str(arguments.trader_id))
        if arguments.public_key is not None:
            return admin.register_bot_key(trader_id, arguments.public_key)
        from gateway.keys import ensure_bot_key_file

        admin.trader(trader_id)  # before a key file is made for nobody
        key = ensure_bot_key_file(Path(arguments.out), trader_id)
        return {**admin.register_bot_key(trader_id, key.public_key), "key_file": str(Path(arguments.out).resolve())}
    if action == "revoke-bot-key":
        return admin.revoke_bot_key(arguments.public_key)
    raise AssertionError(f"unhandled admin action {action}")

