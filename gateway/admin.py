"""The admin actions, shared by the REST admin API and the `zmx admin` command.

Each takes a request body (a dict already checked by its `schemas.Body`, or built by the
command line and checked the same way) and returns the response data. Traders and keys
live in the history store; funds and markets in the matcher shards.
"""

from __future__ import annotations

from typing import Any

from common.store import DuplicateError
from common.types import PAIR_SYMBOL, InexactValue, RejectCode, Step
from gateway import keys
from gateway.envelope import ApiError, invalid_field, now_ms, page
from gateway.routing import Shards
from gateway.schemas import CREATE_MARKET, DEPOSIT


class Admin:
    """Create traders, manage their keys, credit deposits, create/halt/resume markets."""

    def __init__(self, engine, store, shards: Shards, master_secret: bytes) -> None:
        self.engine = engine
        self.store = store
        self.shards = shards
        self.master_secret = master_secret

    # ---------------------------------------------------------------- traders and keys

    def create_trader(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a trader and its first API key; the secret is in this answer only."""
        username = body["username"]
        try:
            trader = self.store.create_trader(username)
        except DuplicateError:
            raise ApiError(RejectCode.ALREADY_EXISTS, f"username {username} is taken",
                           {"field": "username"}) from None
        return {**trader, **self._new_key(trader["trader_id"])}

    def list_traders(self, limit: int, cursor: str | None) -> dict[str, Any]:
        try:
            listing = self.store.list_traders(limit, cursor)
        except ValueError:
            raise invalid_field("cursor", "cursor must be a next_cursor returned by this endpoint") from None
        return page(listing.items, listing.next_cursor, listing.has_more)

    def rotate_key(self, trader_id: int) -> dict[str, Any]:
        """Replace the trader's key with a new one; the old one stops working."""
        self.trader(trader_id)
        return {"trader_id": trader_id, **self._new_key(trader_id)}

    def revoke_keys(self, trader_id: int) -> dict[str, Any]:
        self.trader(trader_id)
        return {"trader_id": trader_id, "revoked": self.store.revoke_api_keys(trader_id)}

    def trader(self, trader_id: int) -> dict[str, Any]:
        trader = self.store.get_trader(trader_id)
        if trader is None:
            raise ApiError(RejectCode.NOT_FOUND, f"no trader {trader_id}", {"trader_id": trader_id})
        return trader

    def _new_key(self, trader_id: int) -> dict[str, str]:
        api_key = keys.new_api_key()
        self.store.replace_api_key(trader_id, keys.hash_api_key(api_key), keys.key_prefix(api_key), now_ms())
        return {"api_key": api_key, "api_secret": keys.derive_secret(self.master_secret, api_key)}

    def register_bot_key(self, trader_id: int, public_key: str) -> dict[str, Any]:
        """Bind a bot's CURVE public key to the trader on every shard.

        Registering a key the trader already holds is a no-op, so a run that stopped half-way
        (one shard down) can simply be repeated; a key held by another trader is refused.
        """
        self.trader(trader_id)
        fields = {"account_id": trader_id, "public_key": public_key}
        for shard_id, result in zip(self.shards.ids, self.engine.call_many(
                [(shard_id, "register_bot_key", fields) for shard_id in self.shards.ids])):
            if isinstance(result, ApiError) and not (
                    result.code is RejectCode.ALREADY_EXISTS and result.details.get("account_id") == trader_id):
                raise result
        return {"trader_id": trader_id, "public_key": public_key, "shards": list(self.shards.ids)}

    def revoke_bot_key(self, public_key: str) -> dict[str, Any]:
        """Unbind a bot key on every shard; its open connections get FORBIDDEN from then on."""
        revoked = []
        for shard_id, result in zip(self.shards.ids, self.engine.call_many(
                [(shard_id, "revoke_bot_key", {"public_key": public_key}) for shard_id in self.shards.ids])):
            if isinstance(result, ApiError):
                if result.code is not RejectCode.NOT_FOUND:
                    raise result
            else:
                revoked.append(shard_id)
        if not revoked:
            raise ApiError(RejectCode.NOT_FOUND, "no such bot key", {"public_key": public_key})
        return {"public_key": public_key, "shards": revoked}

    # ---------------------------------------------------------------- funds

    def deposit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Credit a trader's available balance on one shard."""
        fields = DEPOSIT.command(body)
        self.trader(fields["account_id"])
        shard_id = self.shards.funding(body.get("shard_id"))
        return funds(self.engine.call(shard_id, "deposit", fields), shard_id)

    # ---------------------------------------------------------------- markets

    def create_market(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a market on its shard, first creating assets given with explicit decimals."""
        fields = CREATE_MARKET.command(body)
        pair = fields["pair"]
        match = PAIR_SYMBOL.fullmatch(pair)
        if match is None:
            raise invalid_field("pair", "pair must look like BTC-USDT")
        _check_steps(fields["tick_size"], fields["lot_size"])
        shard_id = self.shards.for_pair(pair)
        wanted = {}
        for side, asset in zip(("base", "quote"), match.groups()):
            given = body.get(side)
            if given is not None and given != asset:
                raise invalid_field(side, f"{side} is {asset} in {pair}")
            if body.get(f"{side}_decimals") is not None:
                wanted[asset] = (f"{side}_decimals", body[f"{side}_decimals"])
        if wanted:
            existing = {asset["asset"]: asset["decimals"] for asset in self.engine.call(shard_id, "markets")["assets"]}
            for asset, (field, decimals) in wanted.items():
                if asset not in existing:
                    self.engine.call(shard_id, "create_asset", {"asset": asset, "decimals": decimals})
                elif existing[asset] != decimals:
                    raise ApiError(RejectCode.ALREADY_EXISTS,
                                   f"{asset} exists with {existing[asset]} decimals, not {decimals}",
                                   {"field": field, "asset": asset, "decimals": existing[asset]})
        return {**self.engine.call(shard_id, "create_market", fields), "shard_id": shard_id}

    def set_halted(self, pair: str, halted: bool) -> dict[str, Any]:
        shard_id = self.shards.for_pair(pair)
        market = self.engine.call(shard_id, "halt" if halted else "resume", {"pair": pair})
        return {**market, "shard_id": shard_id}


def _check_steps(tick_size: str, lot_size: str) -> None:
    """Refuse steps whose product (the quote step of one tick x one lot) no Step can hold.

    The matcher derives that product without guarding it, and an out-of-range one raised
    out of its loop and stopped the process (found by the OpenAPI fuzz run); checked here
    until the matcher refuses it itself.
    """
    steps = {}
    for field, text in (("tick_size", tick_size), ("lot_size", lot_size)):
        try:
            steps[field] = Step(text)
        except InexactValue as error:
            raise invalid_field(field, f"{field}: {error}") from None
    tick, lot = steps["tick_size"], steps["lot_size"]
    try:
        Step(f"{tick.multiplier * lot.multiplier}e-{tick.decimals + lot.decimals}")
    except InexactValue:
        raise invalid_field("lot_size", "tick_size x lot_size is out of range") from None


def funds(reply: dict[str, Any], shard_id: int) -> dict[str, Any]:
    """Render a deposit/withdraw reply: `trader_id` instead of the matcher's `account_id`."""
    return {"trader_id": reply["account_id"], "shard_id": shard_id, "asset": reply["asset"],
            "available": reply["available"], "locked": reply["locked"], "total": reply["total"]}
