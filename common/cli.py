"""The `zmx` command: start the whole stack or one of its processes, or show the config.

    zmx [--config PATH] up [--no-demo]     every process of the stack, supervised
    zmx [--config PATH] matcher [--shard N] one matcher shard
    zmx [--config PATH] feed                the WebSocket feed
    zmx [--config PATH] recorder [--shard N] the history recorder (every shard by default)
    zmx [--config PATH] gateway [--workers N] the REST gateway (gunicorn)
    zmx [--config PATH] admin ACTION ...    traders, keys, deposits, markets (see gateway/admin_cli.py)
    zmx [--config PATH] bot BOT --key-file FILE --pair PAIR  a demo bot (see common/bots/cli.py)
    zmx [--config PATH] config              the effective configuration as JSON

A configuration error prints one line, `zmx: configuration error: ...`, and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from common.bots.cli import add_bot_parser, run_bot
from common.config import Config, ConfigError, config_as_dict, load_config
from common.logs import setup_logging
from gateway.admin_cli import add_admin_parser, run_admin

EXIT_CONFIG_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, load the configuration and run the chosen command."""
    arguments = _parser().parse_args(argv)
    try:
        config = load_config(arguments.config)
        return arguments.command(config, arguments)
    except ConfigError as error:
        print(f"zmx: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zmx", description="zmx: a self-hostable, low-latency exchange server."
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="TOML configuration file; ZMX_* environment variables override it",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="start the whole stack and supervise it")
    up.add_argument(
        "--no-demo",
        dest="demo",
        action="store_false",
        help="start with no demo market, traders or bot",
    )
    up.set_defaults(command=_up)

    matcher = commands.add_parser("matcher", help="run one matcher shard")
    _add_shard_option(matcher, "shard id to run (default: the only configured shard)")
    matcher.set_defaults(command=_matcher)

    feed = commands.add_parser("feed", help="run the WebSocket feed")
    feed.set_defaults(command=_feed)

    gateway = commands.add_parser("gateway", help="run the REST gateway under gunicorn")
    gateway.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="gunicorn worker processes (default: gateway.workers, 0 meaning one per CPU)",
    )
    gateway.set_defaults(command=_gateway)

    add_admin_parser(commands)
    commands.choices["admin"].set_defaults(command=_admin)

    add_bot_parser(commands)
    commands.choices["bot"].set_defaults(command=_bot)

    recorder = commands.add_parser("recorder", help="record the matchers' history into the store")
    _add_shard_option(recorder, "shard id to record (default: every configured shard)")
    recorder.set_defaults(command=_recorder)

    show = commands.add_parser("config", help="print the effective configuration as JSON")
    show.set_defaults(command=_show_config)
    return parser


def _add_shard_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--shard", type=int, default=None, metavar="N", help=help_text)


def _matcher(config: Config, arguments: argparse.Namespace) -> int:
    shard_id = arguments.shard
    if shard_id is None:
        if len(config.shards) != 1:
            known = ", ".join(str(shard.shard_id) for shard in config.shards)
            raise ConfigError(f"--shard is required when several shards are configured ({known})")
        shard_id = config.shards[0].shard_id
    config.shard(shard_id)
    setup_logging(config.log_level, f"matcher-{shard_id}")
    from matcher.server import run_matcher

    run_matcher(config, shard_id)
    return 0


def _feed(config: Config, arguments: argparse.Namespace) -> int:
    setup_logging(config.log_level, "feed")
    from feed.server import run_feed

    run_feed(config)
    return 0


def _gateway(config: Config, arguments: argparse.Namespace) -> int:
    if arguments.workers is not None and not 1 <= arguments.workers <= 256:
        raise ConfigError("--workers must be between 1 and 256")
    setup_logging(config.log_level, "gateway")
    from gateway.server import run_gateway

    return run_gateway(config, arguments.workers)


def _admin(config: Config, arguments: argparse.Namespace) -> int:
    setup_logging(config.log_level, "admin")
    return run_admin(config, arguments)


def _bot(config: Config, arguments: argparse.Namespace) -> int:
    setup_logging(config.log_level, f"bot-{arguments.bot}")
    return run_bot(config, arguments)


def _recorder(config: Config, arguments: argparse.Namespace) -> int:
    if arguments.shard is None:
        shard_ids = [shard.shard_id for shard in config.shards]
    else:
        shard_ids = [config.shard(arguments.shard).shard_id]
    setup_logging(config.log_level, "recorder")
    from common.recorder.server import run_recorder

    return run_recorder(config, shard_ids)


def _up(config: Config, arguments: argparse.Namespace) -> int:
    setup_logging(config.log_level, "supervisor")
    from common.up import run_up

    return run_up(config, arguments.config, arguments.demo)


def _show_config(config: Config, arguments: argparse.Namespace) -> int:
    print(orjson.dumps(config_as_dict(config), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
