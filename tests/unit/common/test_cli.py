"""Tests for common.cli: `zmx config`, configuration errors, shard selection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from common.cli import main


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ZMX_"):
            monkeypatch.delenv(name)


def test_config_prints_the_effective_configuration_with_the_token_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "zmx.toml"
    path.write_text("http_port = 9000\n[journal]\nfsync = 'always'\n")
    monkeypatch.setenv("ZMX_ADMIN_TOKEN", "s3cret")

    assert main(["--config", str(path), "config"]) == 0

    printed = orjson.loads(capsys.readouterr().out)
    assert printed["http_port"] == 9000
    assert printed["journal"]["fsync"] == "always"
    assert printed["admin_token"] == "***"
    assert printed["shards"][0]["command_endpoint"] == "tcp://127.0.0.1:7001"


def test_configuration_error_is_one_line_and_exit_status_two(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "zmx.toml"
    path.write_text("[journal]\nfsync = 'sometimes'\n")

    assert main(["--config", str(path), "config"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"zmx: configuration error: {path}: journal.fsync:")
    assert captured.err.count("\n") == 1


def test_environment_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ZMX_HTTP_PORT", "http")

    assert main(["config"]) == 2

    assert "environment variable ZMX_HTTP_PORT" in capsys.readouterr().err


def test_matcher_refuses_an_unknown_shard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matcher", "--shard", "5"]) == 2

    assert "no shard with shard_id 5" in capsys.readouterr().err


def test_matcher_needs_a_shard_when_several_are_configured(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "zmx.toml"
    path.write_text("[[shards]]\nshard_id = 0\n[[shards]]\nshard_id = 1\nmarkets = ['BTC-USDT']\n")

    assert main(["--config", str(path), "matcher"]) == 2

    assert "--shard is required" in capsys.readouterr().err


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])

    assert exited.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_runs_as_a_module(repo_root: Path) -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ZMX_")}
    environment["PYTHONPATH"] = str(repo_root)

    completed = subprocess.run(
        [sys.executable, "-m", "common.cli", "config"],
        env=environment,
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert orjson.loads(completed.stdout)["ws_port"] == 8001
