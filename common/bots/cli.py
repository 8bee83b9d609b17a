"""`zmx bot ...`: the demo bots, built on the SDK's BotClient.

    zmx [--config PATH] bot market-maker --key-file FILE --pair PAIR [--fair-price P] [--spread-bps B]
                                         [--step-bps B] [--levels N] [--quantity Q] [--max-inventory Q]
                                         [--skew-bps B] [--requote-bps B] [--interval S] [--client-id-prefix X]
    zmx [--config PATH] bot taker --key-file FILE --pair PAIR [--interval S] [--min-quantity Q]
                                  [--max-quantity Q] [--slippage-bps B] [--seed N] [--client-id-prefix X]

The key file is the one `zmx admin register-bot-key` writes; the bot connects to the
shard that owns PAIR (from the configuration) with the server key that shard's matcher
wrote beside its secret key. Bad options and unusable key files exit with 2 before
anything connects.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation

from common.config import Config, ConfigError
from common.types import CLIENT_ORDER_ID, PAIR_SYMBOL

EXIT_BAD_KEY = 2


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_decimal(text: str) -> Decimal:
    value = _decimal(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    return float(_positive_decimal(text))


def _pair(text: str) -> str:
    if not PAIR_SYMBOL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a pair is written like BTC-USDT, got {text!r}")
    return text


def _prefix(text: str) -> str:
    # The bot appends "-<6 hex>-<side><level>-<n>" (up to ~20 characters) to the prefix.
    if not CLIENT_ORDER_ID.fullmatch(text) or len(text) > 12:
        raise argparse.ArgumentTypeError("a client id prefix is 1-12 characters of A-Z a-z 0-9 _ -")
    return text


def add_bot_parser(commands: argparse._SubParsersAction) -> None:
    """Add `bot market-maker` and `bot taker` to the `zmx` parser."""
    bot = commands.add_parser("bot", help="run a demo trading bot over the matcher's bot socket")
    kinds = bot.add_subparsers(title="bots", metavar="BOT", required=True, dest="bot")

    maker = kinds.add_parser("market-maker", help="quote a ladder around a fair price, within an inventory limit")
    _common_options(maker, "mm")
    maker.add_argument("--fair-price", type=_positive_decimal, default=Decimal(100),
                       help="price to quote around until the market has traded (default 100)")
    maker.add_argument("--spread-bps", type=_positive_decimal, default=Decimal(20),
                       help="distance of the best quotes from the fair price, basis points (default 20)")
    maker.add_argument("--step-bps", type=_positive_decimal, default=Decimal(10),
                       help="distance between ladder levels, basis points (default 10)")
    maker.add_argument("--levels", type=_positive_int, default=3, help="orders per side (default 3)")
    maker.add_argument("--quantity", type=_positive_decimal, default=None,
                       help="size of each order (default: 100 lots, or the market's minimums if larger)")
    maker.add_argument("--max-inventory", type=_positive_decimal, default=None,
                       help="most base asset to be long or short since start (default 10 x levels x quantity)")
    maker.add_argument("--skew-bps", type=_decimal, default=None,
                       help="how far the ladder shifts at the inventory limit, basis points (default: spread)")
    maker.add_argument("--requote-bps", type=_positive_decimal, default=Decimal(5),
                       help="requote when the fair price moved this much, basis points (default 5)")
    maker.add_argument("--interval", type=_positive_seconds, default=0.5,
                       help="longest wait between looks at the market, seconds (default 0.5)")

    taker = kinds.add_parser("taker", help="take liquidity at random times, sides and sizes")
    _common_options(taker, "taker")
    taker.add_argument("--interval", type=_positive_seconds, default=2.0,
                       help="mean time between orders, seconds (default 2)")
    taker.add_argument("--min-quantity", type=_positive_decimal, default=None,
                       help="smallest order (default: the market's minimums at the best price, 10 lots at least)")
    taker.add_argument("--max-quantity", type=_positive_decimal, default=None,
                       help="largest order (default: three times the smallest)")
    taker.add_argument("--slippage-bps", type=_decimal, default=Decimal(50),
                       help="how far through the best price the IOC limit goes, basis points (default 50)")
    taker.add_argument("--seed", type=int, default=None, help="random seed (default: different each run)")


def _common_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument("--key-file", required=True, metavar="FILE",
                        help="bot key file written by `zmx admin register-bot-key`")
    parser.add_argument("--pair", required=True, type=_pair, help="market to trade, like BTC-USDT")
    parser.add_argument("--client-id-prefix", type=_prefix, default=prefix,
                        help=f"prefix of this bot's client_order_ids (default {prefix})")


def run_bot(config: Config, arguments: argparse.Namespace) -> int:
    """Run the chosen bot until SIGTERM or SIGINT; return the exit code."""
    # Imported here: every other zmx command would otherwise load the SDK for nothing.
    from common.bots import market_maker, taker
    from common.sdk.bot import BotKeyError

    config.shard_for_market(arguments.pair)  # a ConfigError now, not after connecting
    try:
        if arguments.bot == "market-maker":
            return market_maker.run_market_maker(config, arguments.key_file, market_maker.Settings(
                pair=arguments.pair, fair_price=arguments.fair_price, spread_bps=arguments.spread_bps,
                step_bps=arguments.step_bps, levels=arguments.levels, quantity=arguments.quantity,
                max_inventory=arguments.max_inventory, skew_bps=arguments.skew_bps,
                requote_bps=arguments.requote_bps, interval=arguments.interval,
                client_id_prefix=arguments.client_id_prefix))
        if arguments.min_quantity and arguments.max_quantity and arguments.min_quantity > arguments.max_quantity:
            raise ConfigError("--min-quantity must not exceed --max-quantity")
        return taker.run_taker(config, arguments.key_file, taker.Settings(
            pair=arguments.pair, interval=arguments.interval, min_quantity=arguments.min_quantity,
            max_quantity=arguments.max_quantity, slippage_bps=arguments.slippage_bps, seed=arguments.seed,
            client_id_prefix=arguments.client_id_prefix))
    except BotKeyError as error:
        print(f"zmx bot: {error}", file=sys.stderr)
        return EXIT_BAD_KEY
