"""Key files, key derivation, and the declarative request schemas."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import multiprocessing
import os
import re
import stat
from pathlib import Path

import pytest

from common import protocol
from common.config import Config
from gateway import keys, schemas
from gateway.envelope import ApiError


def test_api_keys_have_the_documented_format_and_are_stored_hashed() -> None:
    api_key = keys.new_api_key()
    assert re.fullmatch(r"zmx_[0-9a-f]{32}", api_key) and keys.API_KEY.fullmatch(api_key)
    assert keys.hash_api_key(api_key) == hashlib.sha256(api_key.encode()).hexdigest()
    assert keys.key_prefix(api_key) == api_key[:12]


def test_the_secret_is_hmac_of_the_key_under_the_master_secret() -> None:
    master = bytes(range(32))
    expected = hmac.new(master, b"zmx_" + b"a" * 32, hashlib.sha256).hexdigest()
    assert keys.derive_secret(master, "zmx_" + "a" * 32) == expected


def test_the_master_secret_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path)
    first = keys.load_master_secret(config)
    path = config.gateway_secret_key_file()

    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load_master_secret(config) == first
    assert [name for name in os.listdir(path.parent) if name.startswith(".")] == []


def _load_secret(data_dir: str, queue) -> None:
    queue.put(keys.load_master_secret(Config(data_dir=Path(data_dir))).hex())


def test_processes_creating_the_secret_together_agree(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_load_secret, args=(str(tmp_path), queue)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    assert len({queue.get(timeout=5) for _ in processes}) == 1


def test_the_admin_token_is_configured_or_generated_once_and_never_built_in(tmp_path: Path) -> None:
    configured = Config(data_dir=tmp_path, admin_token="from-config")
    assert keys.ensure_admin_token(configured) == ("from-config", False)
    assert not keys.admin_token_file(configured).exists()

    unset = Config(data_dir=tmp_path)
    assert keys.configured_admin_token(unset) is None
    token, generated = keys.ensure_admin_token(unset)
    assert generated and len(token) >= 32
    assert stat.S_IMODE(keys.admin_token_file(unset).stat().st_mode) == 0o600
    assert keys.ensure_admin_token(unset) == (token, False)
    assert keys.configured_admin_token(unset) == token
    other = keys.ensure_admin_token(Config(data_dir=tmp_path / "elsewhere"))[0]
    assert other != token


def test_a_damaged_master_secret_file_is_an_error(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path)
    path = config.gateway_secret_key_file()
    path.parent.mkdir(parents=True)
    path.write_text("not hex\n")
    with pytest.raises(ValueError, match="hex"):
        keys.load_master_secret(config)
    path.write_text("abcd\n")
    with pytest.raises(ValueError, match="at least"):
        keys.load_master_secret(dataclasses.replace(config))


# ---------------------------------------------------------------- schemas

BODIES = [schemas.PLACE_ORDER, schemas.AMEND_ORDER, schemas.CANCEL_ALL, schemas.WITHDRAW, schemas.DEPOSIT,
          schemas.CREATE_MARKET, schemas.CREATE_TRADER]


@pytest.mark.parametrize("body", BODIES, ids=lambda body: body.name)
def test_every_protocol_field_a_body_exposes_is_documented(body) -> None:
    for wire_name in body.command_fields.values():
        assert wire_name in schemas.FIELD_SCHEMAS, (body.name, wire_name)
    schema = body.json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(body.command_fields) | set(body.local)


@pytest.mark.parametrize("body", BODIES, ids=lambda body: body.name)
def test_a_body_never_lets_the_caller_set_what_the_gateway_supplies(body) -> None:
    assert "account_id" not in body.command_fields
    for name in ("op", "id", "account_id"):
        with pytest.raises(ApiError) as raised:
            body.check({name: 1})
        assert raised.value.details == {"field": name}


def test_body_fields_follow_the_protocol_schema() -> None:
    assert set(schemas.PLACE_ORDER.command_fields) == set(protocol.COMMANDS["place"]) - {"account_id"}
    assert set(schemas.AMEND_ORDER.command_fields) == {"quantity", "price"}
    assert schemas.DEPOSIT.command_fields == {"trader_id": "account_id", "asset": "asset", "amount": "amount"}


def test_a_protocol_error_names_the_rest_field() -> None:
    with pytest.raises(ApiError) as raised:
        schemas.DEPOSIT.command({"trader_id": -1, "asset": "USDT", "amount": "1"})
    assert raised.value.details == {"field": "trader_id"}
    assert raised.value.message.startswith("trader_id ")


def test_the_command_is_exactly_the_body_plus_what_is_supplied() -> None:
    body = {"pair": "BTC-USDT", "side": "sell", "type": "market", "quantity": "1", "post_only": None}
    assert schemas.PLACE_ORDER.command(body, account_id=9) == {
        "account_id": 9, "pair": "BTC-USDT", "side": "sell", "type": "market", "quantity": "1"}
