"""The zmx Python SDK: REST, WebSocket and raw ZeroMQ clients with one set of order methods.

    from common.sdk import RestClient, FeedClient, BotClient, AsyncBotClient, BotKey, ZmxError

- `RestClient` (rest.py): the REST API, signed, with retries only where they are safe.
- `FeedClient` (ws.py): asyncio WebSocket client keeping local order books (gap -> resync).
- `BotClient` / `AsyncBotClient` (bot.py): a co-located bot on the matcher's CURVE socket,
  with order books from the public PUB.

The REST and bot clients share `place`, `amend`, `cancel`, `cancel_all`, `get_order`,
`open_orders`, `balances` and `reconcile` (orders.py), with the wire's field names. Every
failure is a `ZmxError` carrying `code`, `number`, `message` and `details` (common/errors.py).
docs/sdk.md has an example for each client.
"""

from common.errors import (
    AuthenticationError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    NotFound,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    Unavailable,
    ZmxError,
)
from common.sdk.book import BookSync, OrderBook
from common.sdk.bot import AsyncBotClient, BotClient, BotEndpoints, BotKey, BotKeyError, bot_endpoints
from common.sdk.orders import Reconciliation
from common.sdk.rest import RestClient
from common.sdk.ws import FeedClient

__all__ = [
    "AsyncBotClient",
    "AuthenticationError",
    "BookSync",
    "BotClient",
    "BotEndpoints",
    "BotKey",
    "BotKeyError",
    "Conflict",
    "ConnectionFailed",
    "FeedClient",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "OrderBook",
    "OrderRejected",
    "OutcomeUnknown",
    "RateLimited",
    "Reconciliation",
    "RestClient",
    "Unavailable",
    "ZmxError",
    "bot_endpoints",
]
