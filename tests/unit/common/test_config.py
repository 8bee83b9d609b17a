"""Tests for common.config: defaults, TOML, ZMX_* overrides, every error, shard routing."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from common.config import (
    Config,
    ConfigError,
    JournalConfig,
    MatcherConfig,
    ShardConfig,
    config_as_dict,
    load_config,
)

FULL_TOML = """
data_dir = "/var/lib/zmx"
http_port = 9000
ws_port = 9001
admin_token = "s3cret"
store_url = "postgresql://zmx:hunter2@db.example:5432/zmx"
log_level = "DEBUG"

[journal]
fsync = "always"
snapshot_every_commands = 5000
snapshot_every_seconds = 60
segment_bytes = 1048576

[matcher]
heartbeat_seconds = 0.5
max_batch = 128
max_frame_bytes = 8192
max_open_orders_per_account = 50

[[shards]]
shard_id = 0
markets = ["BTC-USDT", "ETH-USDT"]
command_endpoint = "tcp://10.0.0.1:7001"
bot_endpoint = "tcp://10.0.0.1:7003"
public_endpoint = "tcp://10.0.0.1:7002"
private_endpoint = "tcp://10.0.0.1:7004"
curve_secret_key_file = "/etc/zmx/curve-0.key"

[[shards]]
shard_id = 7
markets = ["*"]
"""


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zmx.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, toml: str | None = None, env: dict[str, str] | None = None) -> str:
    path = None if toml is None else write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as raised:
        load_config(path, env=env or {})
    return str(raised.value)


def test_defaults_without_file_or_environment() -> None:
    config = load_config(env={})

    assert config == Config()
    assert config.data_dir == Path("./data")
    assert (config.http_port, config.ws_port) == (8000, 8001)
    assert config.admin_token is None
    assert config.store_url is None
    assert config.log_level == "info"
    assert config.journal == JournalConfig(
        fsync="batch",
        snapshot_every_commands=100_000,
        snapshot_every_seconds=300.0,
        segment_bytes=64 * 1024 * 1024,
    )
    assert config.matcher == MatcherConfig(
        heartbeat_seconds=1.0,
        max_batch=512,
        max_frame_bytes=65536,
        max_open_orders_per_account=1000,
    )
    assert config.shards == (
        ShardConfig(
            shard_id=0,
            markets=("*",),
            command_endpoint="tcp://127.0.0.1:7001",
            bot_endpoint="tcp://127.0.0.1:7003",
            public_endpoint="tcp://127.0.0.1:7002",
            private_endpoint="tcp://127.0.0.1:7004",
        ),
    )


def test_toml_file_sets_every_key(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_TOML), env={})

    assert config.data_dir == Path("/var/lib/zmx")
    assert (config.http_port, config.ws_port) == (9000, 9001)
    assert config.admin_token == "s3cret"
    assert config.store_url == "postgresql://zmx:hunter2@db.example:5432/zmx"
    assert config.log_level == "debug"
    assert config.journal == JournalConfig("always", 5000, 60.0, 1048576)
    assert config.matcher == MatcherConfig(0.5, 128, 8192, 50)
    assert isinstance(config.journal.snapshot_every_seconds, float)
    first, second = config.shards
    assert first == ShardConfig(
        shard_id=0,
        markets=("BTC-USDT", "ETH-USDT"),
        command_endpoint="tcp://10.0.0.1:7001",
        bot_endpoint="tcp://10.0.0.1:7003",
        public_endpoint="tcp://10.0.0.1:7002",
        private_endpoint="tcp://10.0.0.1:7004",
        curve_secret_key_file=Path("/etc/zmx/curve-0.key"),
    )
    assert second.shard_id == 7
    assert second.markets == ("*",)


def test_unset_shard_endpoints_default_to_ports_offset_by_ten_per_shard(tmp_path: Path) -> None:
    toml = "[[shards]]\nshard_id = 0\n[[shards]]\nshard_id = 2\nmarkets = []\n"
    path = write_toml(tmp_path, toml)

    shard = load_config(path, env={}).shard(2)

    assert shard.endpoints == {
        "command_endpoint": "tcp://127.0.0.1:7021",
        "public_endpoint": "tcp://127.0.0.1:7022",
        "bot_endpoint": "tcp://127.0.0.1:7023",
        "private_endpoint": "tcp://127.0.0.1:7024",
    }


def test_partial_file_keeps_defaults_for_the_rest(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, "[journal]\nfsync = 'off'\n"), env={})

    assert config == dataclasses.replace(Config(), journal=JournalConfig(fsync="off"))


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "ZMX_DATA_DIR": "/srv/zmx",
        "ZMX_HTTP_PORT": "8100",
        "ZMX_WS_PORT": " 8101 ",
        "ZMX_ADMIN_TOKEN": "from-env",
        "ZMX_STORE_URL": "sqlite:////srv/zmx/history.sqlite3",
        "ZMX_LOG_LEVEL": "warning",
        "ZMX_JOURNAL_FSYNC": "off",
        "ZMX_HEARTBEAT_SECONDS": "0.25",
        "HOME": "/root",
        "ZMXNOTOURS": "ignored: not a ZMX_ variable",
    }

    config = load_config(write_toml(tmp_path, FULL_TOML), env=env)

    assert config.data_dir == Path("/srv/zmx")
    assert (config.http_port, config.ws_port) == (8100, 8101)
    assert config.admin_token == "from-env"
    assert config.store_url == "sqlite:////srv/zmx/history.sqlite3"
    assert config.log_level == "warning"
    assert config.journal.fsync == "off"
    assert config.journal.snapshot_every_commands == 5000
    assert config.matcher.heartbeat_seconds == 0.25
    assert config.matcher.max_batch == 128


def test_empty_environment_value_unsets_an_optional_setting(tmp_path: Path) -> None:
    env = {"ZMX_ADMIN_TOKEN": "", "ZMX_STORE_URL": ""}

    config = load_config(write_toml(tmp_path, FULL_TOML), env=env)

    assert config.admin_token is None
    assert config.store_url is None


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ZMX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ZMX_HTTP_PORT", "8200")

    assert load_config().http_port == 8200


def test_config_is_frozen() -> None:
    config = load_config(env={})

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http_port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.journal.fsync = "off"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ("htp_port = 1\n", ["unknown key 'htp_port'", "http_port"]),
        ("[journal]\nfsinc = 'off'\n", ["unknown key 'journal.fsinc'", "fsync"]),
        ("[matcher]\nmax_batches = 1\n", ["unknown key 'matcher.max_batches'"]),
        ("[[shards]]\nshard_id = 0\nmarket = ['*']\n", ["unknown key 'shards[0].market'"]),
        ("[wat]\nx = 1\n", ["unknown key 'wat'"]),
        ("http_port = '8000'\n", ["http_port", "must be an integer", "'8000'"]),
        ("http_port = true\n", ["http_port", "must be an integer", "boolean"]),
        ("http_port = 0\n", ["http_port", "between 1 and 65535", "got 0"]),
        ("ws_port = 65536\n", ["ws_port", "between 1 and 65535", "got 65536"]),
        ("http_port = 8001\n", ["http_port", "ws_port", "must differ"]),
        ("data_dir = ''\n", ["data_dir", "must not be empty"]),
        ("data_dir = 3\n", ["data_dir", "must be a string"]),
        ("log_level = 'loud'\n", ["log_level", "must be one of"]),
        ("store_url = 'mysql://x'\n", ["store_url", "sqlite:// or postgresql://"]),
        ("journal = 1\n", ["journal", "must be a table"]),
        ("[journal]\nfsync = 'sometimes'\n", ["journal.fsync", "always, batch, off", "sometimes"]),
        ("[journal]\nfsync = 1\n", ["journal.fsync", "must be a string"]),
        ("[journal]\nsnapshot_every_commands = 0\n", ["journal.snapshot_every_commands"]),
        ("[journal]\nsnapshot_every_seconds = -1\n", ["journal.snapshot_every_seconds"]),
        ("[journal]\nsnapshot_every_seconds = 'soon'\n", ["journal.snapshot_every_seconds"]),
        ("[journal]\nsegment_bytes = 10\n", ["journal.segment_bytes", "at least 4096"]),
        ("[matcher]\nheartbeat_seconds = nan\n", ["matcher.heartbeat_seconds", "finite"]),
        ("[matcher]\nmax_frame_bytes = 1.5\n", ["matcher.max_frame_bytes", "integer"]),
        ("shards = []\n", ["shards", "at least one"]),
        ("shards = 1\n", ["shards", "array of tables"]),
        ("[[shards]]\nmarkets = ['*']\n", ["shards[0].shard_id", "required"]),
        ("[[shards]]\nshard_id = 1024\n", ["shards[0].shard_id", "between 0 and 1023"]),
        ("[[shards]]\nshard_id = -1\n", ["shards[0].shard_id", "between 0 and 1023"]),
        (
            "[[shards]]\nshard_id = 3\n[[shards]]\nshard_id = 3\nmarkets = []\n",
            ["shards[1].shard_id", "duplicate shard id 3", "shards[0]"],
        ),
        (
            "[[shards]]\nshard_id = 0\ncommand_endpoint = 'localhost:7001'\n",
            ["shards[0].command_endpoint", "ZeroMQ endpoint"],
        ),
        (
            "[[shards]]\nshard_id = 0\n"
            "[[shards]]\nshard_id = 1\nmarkets = []\npublic_endpoint = 'tcp://127.0.0.1:7001'\n",
            ["shards[1].public_endpoint", "tcp://127.0.0.1:7001", "shards[0].command_endpoint"],
        ),
        (
            "[[shards]]\nshard_id = 0\nbot_endpoint = 'tcp://127.0.0.1:7001'\n",
            ["shards[0].bot_endpoint", "already used by shards[0].command_endpoint"],
        ),
        (
            "[[shards]]\nshard_id = 0\nmarkets = ['BTC-USDT']\n"
            "[[shards]]\nshard_id = 1\nmarkets = ['ETH-USDT', 'BTC-USDT']\n",
            ["shards[1].markets", "BTC-USDT", "shard 0"],
        ),
        (
            "[[shards]]\nshard_id = 0\n[[shards]]\nshard_id = 1\n",
            ["shards[1].markets", "only one shard", "shard 0"],
        ),
        ("[[shards]]\nshard_id = 0\nmarkets = ['btc/usdt']\n", ["shards[0].markets", "btc/usdt"]),
        ("[[shards]]\nshard_id = 0\nmarkets = 'BTC-USDT'\n", ["shards[0].markets", "list"]),
        ("[[shards]]\nshard_id = 0\nmarkets = ['*', '*']\n", ["shards[0].markets", "twice"]),
    ],
)
def test_bad_file_value_names_key_and_file(tmp_path: Path, toml: str, fragments: list[str]) -> None:
    message = load_error(tmp_path, toml)

    assert str(tmp_path / "zmx.toml") in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("name", "value", "fragments"),
    [
        ("ZMX_HTTP_PROT", "8000", ["unknown zmx setting", "ZMX_HTTP_PORT"]),
        ("ZMX_HTTP_PORT", "eighty", ["must be an integer", "'eighty'"]),
        ("ZMX_HTTP_PORT", "70000", ["http_port", "between 1 and 65535"]),
        ("ZMX_WS_PORT", "0", ["ws_port", "between 1 and 65535"]),
        ("ZMX_WS_PORT", "8000", ["http_port", "ws_port", "must differ"]),
        ("ZMX_DATA_DIR", "", ["data_dir", "must not be empty"]),
        ("ZMX_LOG_LEVEL", "verbose", ["log_level", "must be one of"]),
        ("ZMX_JOURNAL_FSYNC", "never", ["journal.fsync", "always, batch, off"]),
        ("ZMX_HEARTBEAT_SECONDS", "soon", ["must be a number"]),
        ("ZMX_HEARTBEAT_SECONDS", "0", ["matcher.heartbeat_seconds", "positive"]),
        ("ZMX_HEARTBEAT_SECONDS", "inf", ["matcher.heartbeat_seconds", "finite"]),
        ("ZMX_STORE_URL", "redis://x", ["store_url", "sqlite:// or postgresql://"]),
    ],
)
def test_bad_environment_value_names_the_variable(
    tmp_path: Path, name: str, value: str, fragments: list[str]
) -> None:
    message = load_error(tmp_path, env={name: value})

    assert f"environment variable {name}" in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"

    with pytest.raises(ConfigError, match="cannot read configuration file") as raised:
        load_config(missing, env={})
    assert str(missing) in str(raised.value)


def test_directory_instead_of_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path, env={})


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, "http_port = = 1\n")

    assert "invalid TOML" in message
    assert str(tmp_path / "zmx.toml") in message


def test_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "zmx.toml"
    path.write_bytes(b"admin_token = '\xff'\n")

    with pytest.raises(ConfigError, match="invalid TOML") as raised:
        load_config(path, env={})
    assert str(path) in str(raised.value)


def test_market_goes_to_its_explicit_shard_else_to_the_wildcard(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_TOML), env={})

    assert config.shard_for_market("BTC-USDT").shard_id == 0
    assert config.shard_for_market("ETH-USDT").shard_id == 0
    assert config.shard_for_market("SOL-USDT").shard_id == 7


def test_explicit_assignment_wins_over_an_earlier_wildcard_shard(tmp_path: Path) -> None:
    toml = "[[shards]]\nshard_id = 0\n[[shards]]\nshard_id = 1\nmarkets = ['BTC-USDT']\n"

    config = load_config(write_toml(tmp_path, toml), env={})

    assert config.shard_for_market("BTC-USDT").shard_id == 1
    assert config.shard_for_market("ETH-USDT").shard_id == 0


def test_market_without_a_shard_is_an_error(tmp_path: Path) -> None:
    toml = "[[shards]]\nshard_id = 0\nmarkets = ['BTC-USDT']\n"
    config = load_config(write_toml(tmp_path, toml), env={})

    with pytest.raises(ConfigError, match="ETH-USDT"):
        config.shard_for_market("ETH-USDT")


def test_shard_lookup_by_id(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_TOML), env={})

    assert config.shard(7).markets == ("*",)
    with pytest.raises(ConfigError, match="no shard with shard_id 3"):
        config.shard(3)


def test_shard_directory_and_curve_key_file(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_TOML), env={"ZMX_DATA_DIR": "/srv/zmx"})

    assert config.shard_dir(7) == Path("/srv/zmx/shard-7")
    assert config.curve_secret_key_file(7) == Path("/srv/zmx/shard-7/curve.key")
    assert config.curve_secret_key_file(0) == Path("/etc/zmx/curve-0.key")


def test_config_as_dict_masks_secrets(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, FULL_TOML), env={})

    masked = config_as_dict(config)
    plain = config_as_dict(config, mask_secrets=False)

    assert masked["admin_token"] == "***"
    assert masked["store_url"] == "postgresql://zmx:***@db.example:5432/zmx"
    assert plain["admin_token"] == "s3cret"
    assert plain["data_dir"] == "/var/lib/zmx"
    assert plain["shards"][0]["markets"] == ["BTC-USDT", "ETH-USDT"]
    assert plain["journal"]["fsync"] == "always"


def test_config_as_dict_leaves_unset_secrets_alone() -> None:
    data = config_as_dict(load_config(env={}))

    assert data["admin_token"] is None
    assert data["store_url"] is None


def test_gateway_and_recorder_sections_load_from_toml_and_environment(tmp_path):
    path = tmp_path / "zmx.toml"
    path.write_text(
        '[gateway]\nworkers = 3\ncors_origins = ["https://example.com"]\nrate_limit_backend = "store"\n'
        '[recorder]\nbatch_records = 500\n'
    )
    config = load_config(path, env={"ZMX_ALLOW_KEY_ONLY": "true", "ZMX_GATEWAY_HOST": "0.0.0.0"})
    assert config.gateway.workers == 3
    assert config.gateway.worker_count == 3
    assert config.gateway.cors_origins == ("https://example.com",)
    assert config.gateway.rate_limit_backend == "store"
    assert config.gateway.allow_key_only is True
    assert config.gateway.host == "0.0.0.0"
    assert config.recorder.batch_records == 500


@pytest.mark.parametrize(
    ("document", "env", "message"),
    [
        ("[gateway]\nallow_key_only = 1\n", {}, "gateway.allow_key_only: must be true or false"),
        ("[gateway]\nrate_limit_backend = \"redis\"\n", {}, "gateway.rate_limit_backend: must be one of local, store"),
        ("[gateway]\ncors_origins = \"*\"\n", {}, "gateway.cors_origins: must be a list of origins"),
        ("[recorder]\nbatch_records = 0\n", {}, "recorder.batch_records: must be between 1 and 10000"),
        ("", {"ZMX_ALLOW_KEY_ONLY": "maybe"}, "ZMX_ALLOW_KEY_ONLY: must be true or false"),
    ],
)
def test_gateway_and_recorder_mistakes_name_the_key(tmp_path, document, env, message):
    path = tmp_path / "zmx.toml"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env=env)


def test_store_url_defaults_to_sqlite_under_the_data_directory(tmp_path):
    config = load_config(env={"ZMX_DATA_DIR": str(tmp_path)})
    assert config.effective_store_url() == f"sqlite:///{tmp_path.resolve() / 'store.sqlite3'}"
    assert config.gateway_secret_key_file() == tmp_path / "gateway" / "secret.key"


def test_feed_section_defaults_toml_and_environment(tmp_path):
    from common.config import FeedConfig

    assert load_config(env={}).feed == FeedConfig(
        host="127.0.0.1", conflation_ms=100, max_queue_bytes=1 << 20, ping_interval_seconds=30.0,
        ping_timeout_seconds=30.0, max_connections=10_000, max_connections_per_ip=100,
        max_subscriptions_per_connection=100, max_frame_bytes=4096, max_messages_per_second=20,
        key_recheck_seconds=10.0,
    )
    path = tmp_path / "zmx.toml"
    path.write_text(
        "[feed]\nconflation_ms = 250\nmax_queue_bytes = 65536\nping_interval_seconds = 5\n"
        "ping_timeout_seconds = 2.5\nmax_connections = 50\nmax_connections_per_ip = 3\n"
        "max_subscriptions_per_connection = 7\nmax_frame_bytes = 1024\nmax_messages_per_second = 4\n"
        "key_recheck_seconds = 0.5\n"
    )
    config = load_config(path, env={"ZMX_FEED_HOST": "0.0.0.0"})
    assert config.feed == FeedConfig("0.0.0.0", 250, 65536, 5.0, 2.5, 50, 3, 7, 1024, 4, 0.5)
    assert isinstance(config.feed.ping_interval_seconds, float)
    assert config_as_dict(config)["feed"]["conflation_ms"] == 250


@pytest.mark.parametrize(
    ("document", "env", "message"),
    [
        ("[feed]\nconflation_ms = 0\n", {}, "feed.conflation_ms: must be between 1 and 60000"),
        ("[feed]\nconflation_ms = 0.5\n", {}, "feed.conflation_ms: must be an integer"),
        ("[feed]\nmax_queue_bytes = 100\n", {}, "feed.max_queue_bytes: must be at least 4096"),
        ("[feed]\nping_interval_seconds = 0\n", {}, "feed.ping_interval_seconds: must be a positive"),
        ("[feed]\nmax_frame_bytes = 10\n", {}, "feed.max_frame_bytes: must be between 256 and 1048576"),
        ("[feed]\nmax_subscriptions_per_connection = 0\n", {}, "feed.max_subscriptions_per_connection"),
        ("[feed]\nkey_recheck_seconds = -1\n", {}, "feed.key_recheck_seconds: must be a positive"),
        ("[feed]\nmax_conections = 1\n", {}, "unknown key 'feed.max_conections'"),
        ("", {"ZMX_FEED_HOST": "a b"}, "ZMX_FEED_HOST: feed.host: must be a host name"),
        ('[feed]\npublic_url = "http://example.com/ws"\n', {}, "feed.public_url: must be a ws:// or wss:// URL"),
        ('[feed]\npublic_url = "//elsewhere.example/ws"\n', {}, "feed.public_url: must be a ws:// or wss://"),
        ('[feed]\npublic_url = "wss://example.com:99999/ws"\n', {}, "feed.public_url: Port out of range"),
        ("", {"ZMX_FEED_PUBLIC_URL": 'wss://x/"><script>'}, "ZMX_FEED_PUBLIC_URL: feed.public_url: must be a URL"),
    ],
)
def test_feed_mistakes_name_the_key(tmp_path, document, env, message):
    path = tmp_path / "zmx.toml"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env=env)


@pytest.mark.parametrize("url", ["wss://feed.example.com/ws", "ws://10.0.0.5:8001/ws", "/ws", "/market/feed"])
def test_feed_public_url_is_a_websocket_url_or_a_path_on_the_pages_host(tmp_path, url):
    path = tmp_path / "zmx.toml"
    path.write_text(f'[feed]\npublic_url = "{url}"\n')
    assert load_config(path, env={}).feed.public_url == url
    assert load_config(env={"ZMX_FEED_PUBLIC_URL": url}).feed.public_url == url
    assert load_config(env={"ZMX_FEED_PUBLIC_URL": ""}).feed.public_url is None
