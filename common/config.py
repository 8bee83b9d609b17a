"""Load the one frozen configuration object of a zmx process.

`load_config` is the only place that reads configuration: first the built-in defaults,
then an optional TOML file, then the `ZMX_*` environment variables (the environment wins).
No other module reads `os.environ`. Every value is checked here; anything wrong (an unknown
key, a wrong type, a port out of range, overlapping shards) raises `ConfigError` naming the
key and where the value came from, so a typo never passes silently.

TOML shape (every key optional; see docs/configuration.md)::

    data_dir = "./data"
    http_port = 8000
    ws_port = 8001
    admin_token = "change-me"
    store_url = "postgresql://zmx@localhost/zmx"
    log_level = "info"

    [journal]
    fsync = "batch"
    snapshot_every_commands = 100000
    snapshot_every_seconds = 300.0
    segment_bytes = 67108864

    [matcher]
    heartbeat_seconds = 1.0
    max_batch = 512
    max_frame_bytes = 65536
    max_open_orders_per_account = 1000

    [gateway]
    host = "127.0.0.1"
    workers = 0                       # 0: one per CPU
    threads = 8
    matcher_timeout_seconds = 5.0
    receive_window_ms = 5000
    allow_key_only = false
    max_body_bytes = 65536
    cors_origins = ["*"]
    rate_limit_backend = "local"      # or "store": shared by gateways on several hosts
    rate_limit_window_seconds = 60
    rate_limit_key_weight = 12000
    rate_limit_ip_weight = 24000
    key_cache_seconds = 0.5

    [recorder]
    batch_records = 2000
    poll_seconds = 1.0
    checkpoint_every_records = 200000

    [feed]
    host = "127.0.0.1"
    conflation_ms = 100
    max_queue_bytes = 1048576
    ping_interval_seconds = 30.0
    ping_timeout_seconds = 30.0
    max_connections = 10000
    max_connections_per_ip = 100
    max_subscriptions_per_connection = 100
    max_frame_bytes = 4096
    max_messages_per_second = 20
    key_recheck_seconds = 10.0
    public_url = "wss://example.com/ws"  # how browsers reach the feed (the web page); optional

    [[shards]]
    shard_id = 0
    markets = ["*"]
    command_endpoint = "tcp://127.0.0.1:7001"
    public_endpoint = "tcp://127.0.0.1:7002"
    bot_endpoint = "tcp://127.0.0.1:7003"
    private_endpoint = "tcp://127.0.0.1:7004"
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from common.types import PAIR_SYMBOL

ALL_MARKETS = "*"
FSYNC_MODES = ("always", "batch", "off")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MAX_SHARD_ID = 1023
ENDPOINT_SCHEMES = ("tcp", "ipc", "inproc")
STORE_URL_SCHEMES = ("sqlite", "postgresql", "postgres")
CURVE_SECRET_KEY_FILENAME = "curve.key"
GATEWAY_SECRET_KEY_FILENAME = "secret.key"
RATE_LIMIT_BACKENDS = ("local", "store")

# Shard N's default endpoints are these ports plus 10 * N, so several shards on one host
# need no endpoint configuration at all; shard 0 gets exactly 7001..7004.
_DEFAULT_HOST = "127.0.0.1"
_DEFAULT_PORTS = {
    "command_endpoint": 7001,
    "public_endpoint": 7002,
    "bot_endpoint": 7003,
    "private_endpoint": 7004,
}
_SHARD_PORT_STRIDE = 10


class ConfigError(ValueError):
    """A configuration value is missing, malformed or inconsistent."""


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """How the matcher makes accepted commands durable."""

    fsync: str = "batch"
    snapshot_every_commands: int = 100_000
    snapshot_every_seconds: float = 300.0
    segment_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    """Limits and timings of the matcher's poll loop."""

    heartbeat_seconds: float = 1.0
    max_batch: int = 512
    max_frame_bytes: int = 65536
    max_open_orders_per_account: int = 1000


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The REST gateway: gunicorn workers, matcher timeout, authentication, limits."""

    host: str = "127.0.0.1"
    workers: int = 0
    threads: int = 8
    matcher_timeout_seconds: float = 5.0
    receive_window_ms: int = 5000
    allow_key_only: bool = False
    max_body_bytes: int = 65536
    cors_origins: tuple[str, ...] = ("*",)
    rate_limit_backend: str = "local"
    rate_limit_window_seconds: int = 60
    rate_limit_key_weight: int = 12000
    rate_limit_ip_weight: int = 24000
    key_cache_seconds: float = 0.5
    secret_key_file: Path | None = None

    @property
    def worker_count(self) -> int:
        """Return the configured number of workers, or the CPU count for 0."""
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """The recorder: how much journal it fetches at a time and how often it checkpoints."""

    batch_records: int = 2000
    poll_seconds: float = 1.0
    checkpoint_every_records: int = 200_000


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """The WebSocket feed: conflation, per-client buffers, keepalive and limits."""

    host: str = "127.0.0.1"
    conflation_ms: int = 100
    max_queue_bytes: int = 1 << 20
    ping_interval_seconds: float = 30.0
    ping_timeout_seconds: float = 30.0
    max_connections: int = 10_000
    max_connections_per_ip: int = 100
    max_subscriptions_per_connection: int = 100
    max_frame_bytes: int = 4096
    max_messages_per_second: int = 20
    key_recheck_seconds: float = 10.0
    # The feed's URL as browsers see it (behind a proxy); None: ws://<page's host>:<ws_port>/ws.
    public_url: str | None = None


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """One matcher shard: the markets it owns and the ZeroMQ endpoints it binds."""

    shard_id: int
    markets: tuple[str, ...] = (ALL_MARKETS,)
    command_endpoint: str = "tcp://127.0.0.1:7001"
    bot_endpoint: str = "tcp://127.0.0.1:7003"
    public_endpoint: str = "tcp://127.0.0.1:7002"
    private_endpoint: str = "tcp://127.0.0.1:7004"
    curve_secret_key_file: Path | None = None

    @property
    def endpoints(self) -> dict[str, str]:
        """Return the shard's endpoints by key name."""
        return {key: getattr(self, key) for key in _DEFAULT_PORTS}


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one zmx deployment, shared by all of its processes."""

    data_dir: Path = Path("./data")
    http_port: int = 8000
    ws_port: int = 8001
    admin_token: str | None = None
    store_url: str | None = None
    log_level: str = "info"
    journal: JournalConfig = field(default_factory=JournalConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    shards: tuple[ShardConfig, ...] = (ShardConfig(shard_id=0),)

    def shard(self, shard_id: int) -> ShardConfig:
        """Return the shard with this id or raise `ConfigError`."""
        for shard in self.shards:
            if shard.shard_id == shard_id:
                return shard
        known = ", ".join(str(shard.shard_id) for shard in self.shards)
        raise ConfigError(f"no shard with shard_id {shard_id} is configured (configured: {known})")

    def shard_for_market(self, pair: str) -> ShardConfig:
        """Return the shard that owns a market: its explicit shard, else the "*" shard."""
        wildcard = None
        for shard in self.shards:
            if pair in shard.markets:
                return shard
            if ALL_MARKETS in shard.markets:
                wildcard = shard
        if wildcard is None:
            raise ConfigError(
                f"market {pair!r} is not assigned to any shard and no shard has markets = [\"*\"]"
            )
        return wildcard

    def shard_dir(self, shard_id: int) -> Path:
        """Return the directory holding one shard's journal, snapshots and keys."""
        return self.data_dir / f"shard-{shard_id}"

    def curve_secret_key_file(self, shard_id: int) -> Path:
        """Return where the shard's CURVE server key pair lives (the matcher creates it)."""
        configured = self.shard(shard_id).curve_secret_key_file
        if configured is not None:
            return configured
        return self.shard_dir(shard_id) / CURVE_SECRET_KEY_FILENAME

    def gateway_secret_key_file(self) -> Path:
        """Return the file holding the gateway's key-derivation secret (created on first use)."""
        return self.gateway.secret_key_file or self.data_dir / "gateway" / GATEWAY_SECRET_KEY_FILENAME

    def effective_store_url(self) -> str:
        """Return the store URL: the configured one, or the embedded SQLite file."""
        return self.store_url or f"sqlite:///{(self.data_dir / 'store.sqlite3').resolve()}"


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Build the configuration from defaults, an optional TOML file and `ZMX_*` variables."""
    if env is None:
        env = os.environ
    sources: dict[str, str] = {}
    values: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTION_FIELDS}
    shards: tuple[ShardConfig, ...] | None = None

    if path is not None:
        source = str(path)
        document = _read_toml(source)
        for key, value in document.items():
            if key in _TOP_LEVEL_FIELDS:
                values[key] = _check(_TOP_LEVEL_FIELDS[key], value, key, source)
                sources[key] = source
            elif key in _SECTION_FIELDS:
                _load_section(key, value, source, sections[key], sources)
            elif key == "shards":
                shards = _load_shards(value, source)
                sources["shards"] = source
            else:
                known = _known(_TOP_LEVEL_KEYS)
                raise ConfigError(f"{source}: unknown key {key!r} (known: {known})")

    for name, text in env.items():
        if not name.startswith("ZMX_"):
            continue
        if name not in _ENVIRONMENT:
            known = _known(sorted(_ENVIRONMENT))
            raise ConfigError(f"environment variable {name}: unknown zmx setting (known: {known})")
        section, key = _ENVIRONMENT[name]
        fields = _TOP_LEVEL_FIELDS if section is None else _SECTION_FIELDS[section]
        source = f"environment variable {name}"
        value = _from_text(fields[key], text, name)
        if value is not None:
            value = _check(fields[key], value, _dotted(section, key), source)
        target = values if section is None else sections[section]
        target[key] = value
        sources[_dotted(section, key)] = source

    config = Config(
        **values,
        journal=JournalConfig(**sections["journal"]),
        matcher=MatcherConfig(**sections["matcher"]),
        gateway=GatewayConfig(**sections["gateway"]),
        recorder=RecorderConfig(**sections["recorder"]),
        feed=FeedConfig(**sections["feed"]),
        **({} if shards is None else {"shards": shards}),
    )
    _check_consistency(config, sources)
    return config


def config_as_dict(config: Config, *, mask_secrets: bool = True) -> dict[str, Any]:
    """Return the configuration as JSON-ready data, with secrets masked unless asked not to."""
    data = _plain(dataclasses.asdict(config))
    if mask_secrets:
        if config.admin_token is not None:
            data["admin_token"] = "***"
        if config.store_url is not None:
            data["store_url"] = _mask_url_password(config.store_url)
    return data


# Field checkers: each takes a decoded TOML value and returns the typed value or raises
# ValueError with a message that completes "<source>: <key>: ...".


@dataclass(frozen=True, slots=True)
class _Field:
    # How an environment variable's text becomes a value:
    # "int", "float", "bool", "text", "optional_text", "path" or "list".
    kind: str
    check: Callable[[Any], Any]


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {_describe(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            if maximum is None:
                bounds = f"at least {minimum}"
            else:
                bounds = f"between {minimum} and {maximum}"
            raise ValueError(f"must be {bounds}, got {value}")
        return value

    return check


def _positive_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {_describe(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive finite number of seconds, got {value}")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_describe(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _text(value).lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return text

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_describe(value)}")
    return value


def _host(value: Any) -> str:
    host = _text(value)
    if any(character.isspace() or character == "/" for character in host):
        raise ValueError(f"must be a host name or address such as 127.0.0.1, got {host!r}")
    return host


def _origins(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(origin, str) and origin for origin in value):
        raise ValueError(f"must be a list of origins such as [\"https://example.com\"] or [\"*\"], got {_describe(value)}")
    return tuple(value)


def _public_feed_url(value: Any) -> str:
    url = _text(value)
    if any(character.isspace() or character in '"<>\\' for character in url):
        raise ValueError(f"must be a URL without spaces, quotes or angle brackets, got {url!r}")
    if url.startswith("/") and not url.startswith("//"):
        return url  # a path on the web page's own host, for a proxy that routes it to the feed
    parts = urlsplit(url)
    parts.port  # urllib raises ValueError here for a port that is not a number in 0..65535
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"must be a ws:// or wss:// URL, or a path such as /ws on the web page's host; got {url!r}")
    return url


def _path(value: Any) -> Path:
    return Path(_text(value))


def _store_url(value: Any) -> str:
    url = _text(value)
    scheme = urlsplit(url).scheme
    if scheme not in STORE_URL_SCHEMES:
        raise ValueError(f"must be a sqlite:// or postgresql:// URL, got scheme {scheme!r}")
    return url


def _endpoint(value: Any) -> str:
    endpoint = _text(value)
    scheme, separator, address = endpoint.partition("://")
    if not separator or scheme not in ENDPOINT_SCHEMES or not address:
        raise ValueError(
            f"must be a ZeroMQ endpoint such as tcp://127.0.0.1:7001, got {endpoint!r}"
        )
    return endpoint


def _markets(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(
            f"must be a list of pairs such as [\"BTC-USDT\"] or [\"*\"], got {_describe(value)}"
        )
    markets = []
    for market in value:
        valid = isinstance(market, str) and (
            market == ALL_MARKETS or PAIR_SYMBOL.fullmatch(market) is not None
        )
        if not valid:
            raise ValueError(f"must hold pairs written like BTC-USDT, or \"*\"; got {market!r}")
        if market in markets:
            raise ValueError(f"lists {market!r} twice")
        markets.append(market)
    return tuple(markets)


_PORT = _Field("int", _int_at_least(1, 65535))
_TOP_LEVEL_FIELDS: dict[str, _Field] = {
    "data_dir": _Field("path", _path),
    "http_port": _PORT,
    "ws_port": _PORT,
    "admin_token": _Field("optional_text", _text),
    "store_url": _Field("optional_text", _store_url),
    "log_level": _Field("text", _choice(*LOG_LEVELS)),
}
_SECTION_FIELDS: dict[str, dict[str, _Field]] = {
    "journal": {
        "fsync": _Field("text", _choice(*FSYNC_MODES)),
        "snapshot_every_commands": _Field("int", _int_at_least(1)),
        "snapshot_every_seconds": _Field("float", _positive_seconds),
        "segment_bytes": _Field("int", _int_at_least(4096)),
    },
    "matcher": {
        "heartbeat_seconds": _Field("float", _positive_seconds),
        "max_batch": _Field("int", _int_at_least(1)),
        "max_frame_bytes": _Field("int", _int_at_least(1024)),
        "max_open_orders_per_account": _Field("int", _int_at_least(1)),
    },
    "gateway": {
        "host": _Field("text", _host),
        "workers": _Field("int", _int_at_least(0, 256)),
        "threads": _Field("int", _int_at_least(1, 256)),
        "matcher_timeout_seconds": _Field("float", _positive_seconds),
        "receive_window_ms": _Field("int", _int_at_least(1, 600_000)),
        "allow_key_only": _Field("bool", _boolean),
        "max_body_bytes": _Field("int", _int_at_least(1024, 16 << 20)),
        "cors_origins": _Field("list", _origins),
        "rate_limit_backend": _Field("text", _choice(*RATE_LIMIT_BACKENDS)),
        "rate_limit_window_seconds": _Field("int", _int_at_least(1, 3600)),
        "rate_limit_key_weight": _Field("int", _int_at_least(1)),
        "rate_limit_ip_weight": _Field("int", _int_at_least(1)),
        "key_cache_seconds": _Field("float", _positive_seconds),
        "secret_key_file": _Field("path", _path),
    },
    "recorder": {
        "batch_records": _Field("int", _int_at_least(1, 10_000)),
        "poll_seconds": _Field("float", _positive_seconds),
        "checkpoint_every_records": _Field("int", _int_at_least(1)),
    },
    "feed": {
        "host": _Field("text", _host),
        "conflation_ms": _Field("int", _int_at_least(1, 60_000)),
        "max_queue_bytes": _Field("int", _int_at_least(4096)),
        "ping_interval_seconds": _Field("float", _positive_seconds),
        "ping_timeout_seconds": _Field("float", _positive_seconds),
        "max_connections": _Field("int", _int_at_least(1)),
        "max_connections_per_ip": _Field("int", _int_at_least(1)),
        "max_subscriptions_per_connection": _Field("int", _int_at_least(1, 10_000)),
        "max_frame_bytes": _Field("int", _int_at_least(256, 1 << 20)),
        "max_messages_per_second": _Field("int", _int_at_least(1)),
        "key_recheck_seconds": _Field("float", _positive_seconds),
        "public_url": _Field("optional_text", _public_feed_url),
    },
}
_SHARD_FIELDS: dict[str, _Field] = {
    "shard_id": _Field("int", _int_at_least(0, MAX_SHARD_ID)),
    "markets": _Field("list", _markets),
    "command_endpoint": _Field("text", _endpoint),
    "bot_endpoint": _Field("text", _endpoint),
    "public_endpoint": _Field("text", _endpoint),
    "private_endpoint": _Field("text", _endpoint),
    "curve_secret_key_file": _Field("path", _path),
}
_TOP_LEVEL_KEYS = sorted([*_TOP_LEVEL_FIELDS, *_SECTION_FIELDS, "shards"])

# Environment variable -> (section or None for top level, key).
_ENVIRONMENT: dict[str, tuple[str | None, str]] = {
    "ZMX_DATA_DIR": (None, "data_dir"),
    "ZMX_HTTP_PORT": (None, "http_port"),
    "ZMX_WS_PORT": (None, "ws_port"),
    "ZMX_ADMIN_TOKEN": (None, "admin_token"),
    "ZMX_STORE_URL": (None, "store_url"),
    "ZMX_LOG_LEVEL": (None, "log_level"),
    "ZMX_JOURNAL_FSYNC": ("journal", "fsync"),
    "ZMX_HEARTBEAT_SECONDS": ("matcher", "heartbeat_seconds"),
    "ZMX_GATEWAY_WORKERS": ("gateway", "workers"),
    "ZMX_GATEWAY_HOST": ("gateway", "host"),
    "ZMX_ALLOW_KEY_ONLY": ("gateway", "allow_key_only"),
    "ZMX_FEED_HOST": ("feed", "host"),
    "ZMX_FEED_PUBLIC_URL": ("feed", "public_url"),
}

ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(_ENVIRONMENT)


def _read_toml(source: str) -> dict[str, Any]:
    try:
        with open(source, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{source}: cannot read configuration file: {reason}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: not UTF-8 ({error.reason})") from None


def _load_section(
    section: str, table: Any, source: str, target: dict[str, Any], sources: dict[str, str]
) -> None:
    if not isinstance(table, dict):
        raise ConfigError(
            f"{source}: {section}: must be a table ([{section}]), got {_describe(table)}"
        )
    fields = _SECTION_FIELDS[section]
    for key, value in table.items():
        dotted = _dotted(section, key)
        if key not in fields:
            known = _known(fields)
            raise ConfigError(f"{source}: unknown key {dotted!r} (known in [{section}]: {known})")
        target[key] = _check(fields[key], value, dotted, source)
        sources[dotted] = source


def _load_shards(tables: Any, source: str) -> tuple[ShardConfig, ...]:
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(
            f"{source}: shards: must be an array of tables ([[shards]]), got {_describe(tables)}"
        )
    if not tables:
        raise ConfigError(f"{source}: shards: at least one [[shards]] table is required")
    shards = []
    seen_ids: dict[int, int] = {}
    for index, table in enumerate(tables):
        prefix = f"shards[{index}]"
        arguments: dict[str, Any] = {}
        for key, value in table.items():
            if key not in _SHARD_FIELDS:
                known = _known(_SHARD_FIELDS)
                raise ConfigError(
                    f"{source}: unknown key '{prefix}.{key}' (known in [[shards]]: {known})"
                )
            arguments[key] = _check(_SHARD_FIELDS[key], value, f"{prefix}.{key}", source)
        if "shard_id" not in arguments:
            raise ConfigError(f"{source}: {prefix}.shard_id: is required")
        shard_id = arguments["shard_id"]
        if shard_id in seen_ids:
            raise ConfigError(
                f"{source}: {prefix}.shard_id: duplicate shard id {shard_id}"
                f" (also shards[{seen_ids[shard_id]}])"
            )
        seen_ids[shard_id] = index
        for key, port in _DEFAULT_PORTS.items():
            port += _SHARD_PORT_STRIDE * shard_id
            arguments.setdefault(key, f"tcp://{_DEFAULT_HOST}:{port}")
        shards.append(ShardConfig(**arguments))
    return tuple(shards)


def _check_consistency(config: Config, sources: dict[str, str]) -> None:
    if config.http_port == config.ws_port:
        http_source = sources.get("http_port", "default")
        ws_source = sources.get("ws_port", "default")
        raise ConfigError(
            f"http_port ({http_source}) and ws_port ({ws_source}): must differ,"
            f" both are {config.http_port}"
        )

    shards_source = sources.get("shards", "default")
    endpoint_owners: dict[str, str] = {}
    market_owners: dict[str, int] = {}
    wildcard_owner: int | None = None
    for index, shard in enumerate(config.shards):
        for key, endpoint in shard.endpoints.items():
            owner = f"shards[{index}].{key}"
            if endpoint in endpoint_owners:
                raise ConfigError(
                    f"{shards_source}: {owner}: endpoint {endpoint} is already used"
                    f" by {endpoint_owners[endpoint]}"
                )
            endpoint_owners[endpoint] = owner
        for market in shard.markets:
            if market == ALL_MARKETS:
                if wildcard_owner is not None:
                    raise ConfigError(
                        f"{shards_source}: shards[{index}].markets: only one shard may own \"*\""
                        f" (shard {wildcard_owner} already does)"
                    )
                wildcard_owner = shard.shard_id
            elif market in market_owners:
                raise ConfigError(
                    f"{shards_source}: shards[{index}].markets: market {market} is already"
                    f" assigned to shard {market_owners[market]}"
                )
            else:
                market_owners[market] = shard.shard_id


def _check(spec: _Field, value: Any, key: str, source: str) -> Any:
    try:
        return spec.check(value)
    except ValueError as error:
        raise ConfigError(f"{source}: {key}: {error}") from None


def _from_text(spec: _Field, text: str, name: str) -> Any:
    if spec.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            message = f"must be an integer, got {text!r}"
    elif spec.kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            message = f"must be a number, got {text!r}"
    elif spec.kind == "optional_text" and text == "":
        return None
    elif spec.kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        message = f"must be true or false, got {text!r}"
    else:
        return text
    raise ConfigError(f"environment variable {name}: {message}")


def _known(keys: Any) -> str:
    return ", ".join(keys)


def _dotted(section: str | None, key: str) -> str:
    return key if section is None else f"{section}.{key}"


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _describe(value: Any) -> str:
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} ({value!r})"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
