"""Which matcher shard a request goes to.

- A market's commands go to the shard that owns it (`config.shard_for_market`).
- An order id carries its shard in its low 10 bits (docs/matching.md), so a request
  naming an order goes straight to that shard.
- Each shard keeps its own ledger. Deposits and withdrawals go to the shard given by
  `shard_id`, by default the shard that owns "*" (else the lowest id); balances are
  summed over every shard.
- Account-wide queries (open orders, balances, cancel-all without a pair) ask every shard.
With one shard, every rule gives shard 0's id and the gateway asks one matcher.
"""

from __future__ import annotations

from common.config import ALL_MARKETS, Config, ConfigError
from common.types import PAIR_SYMBOL, RejectCode
from gateway.envelope import ApiError, invalid_field

SHARD_ID_BITS = 10
_SHARD_MASK = (1 << SHARD_ID_BITS) - 1


class Shards:
    """Map pairs, order ids and funding requests to configured shard ids."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ids = tuple(sorted(shard.shard_id for shard in config.shards))
        self.single = self.ids[0] if len(self.ids) == 1 else None
        wildcard = [shard.shard_id for shard in config.shards if ALL_MARKETS in shard.markets]
        self.funding_default = wildcard[0] if wildcard else self.ids[0]
        self._by_pair: dict[str, int] = {}

    def for_pair(self, pair: str) -> int:
        """Return the shard owning `pair`; UNKNOWN_MARKET when none can."""
        shard_id = self._by_pair.get(pair)
        if shard_id is not None:
            return shard_id
        if not PAIR_SYMBOL.fullmatch(pair):
            raise ApiError(RejectCode.UNKNOWN_MARKET, f"unknown market {pair[:40]}", {"pair": pair[:40]})
        try:
            shard_id = self.config.shard_for_market(pair).shard_id
        except ConfigError:
            raise ApiError(RejectCode.UNKNOWN_MARKET, f"unknown market {pair}: no shard owns it",
                           {"pair": pair}) from None
        if len(self._by_pair) < 100_000:
            self._by_pair[pair] = shard_id
        return shard_id

    def for_order(self, order_id: int) -> int:
        """Return the shard that issued `order_id`; ORDER_NOT_FOUND for an id no shard issues."""
        shard_id = order_id & _SHARD_MASK
        if shard_id not in self.ids:
            raise ApiError(RejectCode.ORDER_NOT_FOUND, "no such order", {"order_id": order_id})
        return shard_id

    def funding(self, shard_id: int | None) -> int:
        """Return the shard whose ledger a deposit or withdrawal uses."""
        if shard_id is None:
            return self.funding_default
        if shard_id not in self.ids:
            raise invalid_field("shard_id", f"no shard {shard_id} is configured")
        return shard_id
