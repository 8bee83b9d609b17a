"""`zmx bot market-maker` and `zmx bot taker` as real processes against a real matcher.

The market maker is started the way `zmx up` starts it, before its key is registered and
before its market exists; it waits, then quotes a fresh market around its default fair
price. The taker trades with it. After the matcher is killed and restarted, the market
maker reconciles and quotes one ladder again (no duplicates); SIGTERM makes both exit 0,
the market maker with its quotes canceled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from common.sdk import BotKey
from tests.integration.harness import REPO_ROOT, MatcherProcess, _die_with_parent
from tests.polling import poll_until

pytestmark = pytest.mark.integration

PAIR = "BTC-USDT"
MAKER, TAKER = 5, 6


def start_bot(matcher: MatcherProcess, kind: str, key_file: Path, *options: str) -> tuple[subprocess.Popen, Path]:
    log_path = matcher.cluster.directory / f"{kind}.log"
    env = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
    command = [sys.executable, "-m", "common.cli", "--config", str(matcher.cluster.config_path), "bot", kind,
               "--key-file", str(key_file), "--pair", PAIR, *options]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    return process, log_path


def log_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def logged(path: Path, message: str) -> bool:
    return any(line["msg"] == message or message in line["msg"] for line in log_lines(path))


def stop(process: subprocess.Popen, log_path: Path) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"{log_path.name} ignored SIGTERM\n{log_path.read_text()}") from None


def test_the_market_maker_quotes_a_fresh_market_survives_a_matcher_restart_and_stops_cleanly(
        matcher: MatcherProcess, tmp_path: Path) -> None:
    keys = {account: BotKey.generate(account) for account in (MAKER, TAKER)}
    for account, key in keys.items():
        key.save(tmp_path / f"bot-{account}.key")
    maker, maker_log = start_bot(matcher, "market-maker", tmp_path / f"bot-{MAKER}.key")
    taker = None
    try:
        poll_until(lambda: logged(maker_log, "refused this bot key"), 20, "the market maker to wait for its key")
        admin = matcher.client()
        admin.request("create_market", pair=PAIR, tick_size="0.01", lot_size="0.001", taker_fee_bps=5)
        for account, key in keys.items():
            admin.request("deposit", account_id=account, asset="USDT", amount="100000")
            admin.request("deposit", account_id=account, asset="BTC", amount="100")
            admin.request("register_bot_key", account_id=account, public_key=key.public_key)

        def ladder() -> dict | None:
            book = admin.request("snapshot", pair=PAIR)
            return book if len(book["bids"]) == 3 and len(book["asks"]) == 3 else None

        book = poll_until(ladder, 20, "the market maker's ladder")
        assert Decimal(book["bids"][0][0]) < 100 < Decimal(book["asks"][0][0])  # around --fair-price's default
        assert {size for _, size in book["bids"] + book["asks"]} == {"0.100"}  # 100 lots

        taker, taker_log = start_bot(matcher, "taker", tmp_path / f"bot-{TAKER}.key", "--interval", "0.1",
                                     "--seed", "3")

        def maker_traded() -> bool:
            return {b["asset"]: b["total"] for b in admin.request("balances", account_id=MAKER)}["BTC"] != \
                "100.00000000"

        poll_until(maker_traded, 20, "the taker to trade with the market maker")

        matcher.kill()
        matcher.start()
        admin = matcher.client()
        poll_until(lambda: logged(maker_log, "reconnected to the matcher"), 20, "the market maker to reconnect")

        def one_ladder() -> list | None:
            orders = admin.request("open_orders", account_id=MAKER)
            return orders if len(orders) == 6 and ladder() else None

        orders = poll_until(one_ladder, 20, "one ladder after the restart")
        client_ids = [order["client_order_id"] for order in orders]
        assert len(set(client_ids)) == 6 and all(client_id.startswith("mm-") for client_id in client_ids)
        assert logged(maker_log, "reconciled")

        assert stop(maker, maker_log) == 0
        assert admin.request("open_orders", account_id=MAKER) == []
        assert stop(taker, taker_log) == 0
        lines = log_lines(maker_log)
        assert lines[-1]["msg"] == "market maker stopped" and lines[-1]["signal"] == "SIGTERM"
        assert {line["process"] for line in lines} == {"bot-market-maker"}
        assert any(line["msg"] == "took" for line in log_lines(taker_log))
        for account in (MAKER, TAKER):
            assert all(Decimal(b["available"]) >= 0 for b in admin.request("balances", account_id=account))
    finally:
        for process in (maker, taker):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


def test_a_bot_with_an_unusable_key_file_exits_with_2(matcher: MatcherProcess, tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text('{"account_id": 5}')
    process, log_path = start_bot(matcher, "taker", tmp_path / "bad.key")
    assert process.wait(30) == 2
    assert "expected exactly account_id, public_key and secret_key" in log_path.read_text()
