"""API keys, API secrets and the admin token.

- An API key is `zmx_` + 32 lowercase hex characters. The store keeps only its SHA-256
  (hex) and a short prefix for display, so a copy of the database gives nobody a key.
- The API secret is never stored: it is HMAC-SHA256(master secret, api key) in hex. The
  master secret is 32 random bytes in `config.gateway_secret_key_file()` (hex, mode 0600),
  created on first use. Every gateway worker, every gateway host that shares the file, and
  the `zmx admin` command derive the same secret from a key.
- The admin token comes from `admin_token` in the configuration; with none configured,
  `zmx gateway` generates one and keeps it in `<data_dir>/gateway/admin.token` (0600).
  There is no built-in default.
- A co-located bot's CURVE key pair can live in a key file (JSON, mode 0600) that
  `zmx admin register-bot-key --out FILE` writes and `zmx bot` reads.

Files are created atomically and only once (written aside, then hard-linked into place),
so processes starting together agree on one value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from common.config import Config
from common.sdk.bot import BotKey

API_KEY_PREFIX = "zmx_"
API_KEY = re.compile(r"zmx_[0-9a-f]{32}")
KEY_DISPLAY_LENGTH = 12  # "zmx_" and the first 8 hex characters
MASTER_SECRET_BYTES = 32
ADMIN_TOKEN_FILENAME = "admin.token"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_hex(16)


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_prefix(api_key: str) -> str:
    return api_key[:KEY_DISPLAY_LENGTH]


def derive_secret(master_secret: bytes, api_key: str) -> str:
    """Return the API secret of a key: hex HMAC-SHA256(master secret, key)."""
    return hmac.new(master_secret, api_key.encode(), hashlib.sha256).hexdigest()


def load_master_secret(config: Config) -> bytes:
    """Return the key-derivation secret, creating the file on first use."""
    path = config.gateway_secret_key_file()
    text = _read_or_create(path, lambda: secrets.token_hex(MASTER_SECRET_BYTES))
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: expected {MASTER_SECRET_BYTES * 2} hex characters") from None
    if len(secret) < MASTER_SECRET_BYTES:
        raise ValueError(f"{path}: expected at least {MASTER_SECRET_BYTES * 2} hex characters")
    return secret


def admin_token_file(config: Config) -> Path:
    return config.data_dir / "gateway" / ADMIN_TOKEN_FILENAME


def configured_admin_token(config: Config) -> str | None:
    """Return the admin token: the configured one, else the generated file's, else None."""
    if config.admin_token is not None:
        return config.admin_token
    try:
        token = admin_token_file(config).read_text().strip()
    except FileNotFoundError:
        return None
    return token or None


def ensure_admin_token(config: Config) -> tuple[str, bool]:
    """Return (token, generated now): the configured or stored token, else a new stored one."""
    token = configured_admin_token(config)
    if token is not None:
        return token, False
    generated = secrets.token_urlsafe(32)
    token = _read_or_create(admin_token_file(config), lambda: generated)
    return token, token == generated


def ensure_bot_key_file(path: Path, account_id: int) -> BotKey:
    """Return the bot key in `path`, creating the file (mode 0600, once) with a new key pair.

    An existing file must hold a valid key of `account_id`; raises ValueError otherwise.
    """
    if not path.exists():
        _read_or_create(path, lambda: BotKey.generate(account_id).to_json().decode())
    key = BotKey.load(path)  # BotKeyError is a ValueError
    if key.account_id != account_id:
        raise ValueError(f"{path} holds the key of trader {key.account_id}, not {account_id}")
    return key


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    """Return the file's stripped text; create it (0600, atomically, once) if it does not exist."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(make() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails if another process created it first: theirs wins
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_text().strip()
