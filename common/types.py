"""Enums shared by every process, the reject-code table, and exact decimal <-> integer steps.

Inside the matcher prices are integer ticks, quantities integer lots and balances integer
units of each asset's smallest step. Decimal strings exist only at the edges (REST,
WebSocket, the ZeroMQ wire). `Step` converts between the two and refuses anything that is
not an exact, finite, positive multiple of the step: it never rounds.
"""

from __future__ import annotations

import enum
import re


class Side(enum.IntEnum):
    BUY = 0
    SELL = 1

    @property
    def wire(self) -> str:
        return _SIDE_WIRE[self]


_SIDE_WIRE = {Side.BUY: "buy", Side.SELL: "sell"}


class OrderType(enum.IntEnum):
    LIMIT = 0
    MARKET = 1

    @property
    def wire(self) -> str:
        return self.name.lower()


class TimeInForce(enum.IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2

    @property
    def wire(self) -> str:
        return self.name


class StpMode(enum.IntEnum):
    """Self-trade prevention; the taker's mode decides what happens."""

    EXPIRE_MAKER = 0
    EXPIRE_TAKER = 1
    EXPIRE_BOTH = 2
    DECREMENT = 3
    NONE = 4

    @property
    def wire(self) -> str:
        return self.name.lower()


class OrderStatus(enum.IntEnum):
    NEW = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    CANCELED = 3
    EXPIRED = 4
    REJECTED = 5

    @property
    def wire(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self <= OrderStatus.PARTIALLY_FILLED


class Liquidity(enum.IntEnum):
    MAKER = 0
    TAKER = 1

    @property
    def wire(self) -> str:
        return self.name.lower()


def _wire_table(enum_type: type[enum.Enum]) -> dict[str, enum.Enum]:
    return {member.wire: member for member in enum_type}  # type: ignore[attr-defined]


SIDE_BY_WIRE = _wire_table(Side)
ORDER_TYPE_BY_WIRE = _wire_table(OrderType)
TIME_IN_FORCE_BY_WIRE = _wire_table(TimeInForce)
STP_BY_WIRE = _wire_table(StpMode)
STATUS_BY_WIRE = _wire_table(OrderStatus)


class RejectCode(enum.IntEnum):
    """Every reason a request can fail, one numeric range per subsystem.

    1xxx input and protocol, 2xxx authentication, 3xxx lookup and uniqueness,
    4xxx business rules of the matcher, 5xxx transport and capacity.
    """

    INVALID_JSON = 1001
    INVALID_FIELD = 1002
    INVALID_PRICE = 1003
    INVALID_QUANTITY = 1004
    UNKNOWN_MARKET = 1005
    UNKNOWN_COMMAND = 1006
    MALFORMED_FRAME = 1007
    UNKNOWN_ASSET = 1008
    INVALID_AMOUNT = 1009

    MISSING_AUTHENTICATION = 2001
    INVALID_API_KEY = 2002
    INVALID_SIGNATURE = 2003
    TIMESTAMP_OUT_OF_WINDOW = 2004
    FORBIDDEN = 2005

    NOT_FOUND = 3001
    ORDER_NOT_FOUND = 3002
    DUPLICATE_CLIENT_ORDER_ID = 3003
    ALREADY_EXISTS = 3004
    METHOD_NOT_ALLOWED = 3005

    INSUFFICIENT_BALANCE = 4001
    POST_ONLY_WOULD_TAKE = 4002
    MARKET_HALTED = 4003
    BELOW_MIN_QUANTITY = 4004
    BELOW_MIN_NOTIONAL = 4005
    AMEND_REJECTED = 4006
    ORDER_NOT_OPEN = 4007
    TOO_MANY_OPEN_ORDERS = 4008

    BODY_TOO_LARGE = 5001
    RATE_LIMITED = 5002
    MATCHER_UNAVAILABLE = 5003
    MATCHER_TIMEOUT = 5004
    INTERNAL_ERROR = 5005
    STORE_UNAVAILABLE = 5006


HTTP_STATUS: dict[RejectCode, int] = {
    RejectCode.INVALID_JSON: 400,
    RejectCode.INVALID_FIELD: 400,
    RejectCode.INVALID_PRICE: 400,
    RejectCode.INVALID_QUANTITY: 400,
    RejectCode.UNKNOWN_MARKET: 400,
    RejectCode.UNKNOWN_COMMAND: 400,
    RejectCode.MALFORMED_FRAME: 400,
    RejectCode.UNKNOWN_ASSET: 400,
    RejectCode.INVALID_AMOUNT: 400,
    RejectCode.MISSING_AUTHENTICATION: 401,
    RejectCode.INVALID_API_KEY: 401,
    RejectCode.INVALID_SIGNATURE: 401,
    RejectCode.TIMESTAMP_OUT_OF_WINDOW: 401,
    RejectCode.FORBIDDEN: 403,
    RejectCode.NOT_FOUND: 404,
    RejectCode.ORDER_NOT_FOUND: 404,
    RejectCode.DUPLICATE_CLIENT_ORDER_ID: 409,
    RejectCode.ALREADY_EXISTS: 409,
    RejectCode.METHOD_NOT_ALLOWED: 405,
    RejectCode.INSUFFICIENT_BALANCE: 422,
    RejectCode.POST_ONLY_WOULD_TAKE: 422,
    RejectCode.MARKET_HALTED: 422,
    RejectCode.BELOW_MIN_QUANTITY: 422,
    RejectCode.BELOW_MIN_NOTIONAL: 422,
    RejectCode.AMEND_REJECTED: 422,
    RejectCode.ORDER_NOT_OPEN: 422,
    RejectCode.TOO_MANY_OPEN_ORDERS: 422,
    RejectCode.BODY_TOO_LARGE: 413,
    RejectCode.RATE_LIMITED: 429,
    RejectCode.MATCHER_UNAVAILABLE: 503,
    RejectCode.MATCHER_TIMEOUT: 504,
    RejectCode.INTERNAL_ERROR: 500,
    RejectCode.STORE_UNAVAILABLE: 503,
}

REJECT_BY_NAME = {code.name: code for code in RejectCode}


# Digits on either side of the point that a decimal string may carry. Far beyond any real
# price or balance, small enough that no input makes the conversion slow.
MAX_INTEGER_DIGITS = 24
MAX_FRACTION_DIGITS = 24
MAX_EXPONENT = 40
# ASCII digits only: `\d` would also accept other scripts' digits.
_PLAIN_DECIMAL = re.compile(r"([0-9]{1,%d})(?:\.([0-9]{1,%d}))?" % (MAX_INTEGER_DIGITS, MAX_FRACTION_DIGITS))
_SCIENTIFIC = re.compile(
    r"([0-9]{1,%d})(?:\.([0-9]{1,%d}))?[eE]([+-]?[0-9]{1,4})" % (MAX_INTEGER_DIGITS, MAX_FRACTION_DIGITS)
)


class InexactValue(ValueError):
    """A decimal string that is not an exact, finite, in-range multiple of a step."""


def parse_decimal(text: object) -> tuple[int, int]:
    """Parse a non-negative decimal string into (digits, exponent) with value digits * 10**-exponent.

    Accepts plain notation ("42150.50") and scientific notation ("1.5e3"); refuses signs,
    whitespace, NaN, infinity, non-ASCII digits, non-strings and anything out of range.
    """
    if not isinstance(text, str):
        raise InexactValue("must be a decimal string")
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is not None:
        whole, fraction = match.groups()
        if fraction is None:
            return int(whole), 0
        return int(whole + fraction), len(fraction)
    match = _SCIENTIFIC.fullmatch(text)
    if match is None:
        raise InexactValue("must be a plain decimal string like 42150.50")
    whole, fraction, exponent_text = match.groups()
    fraction = fraction or ""
    exponent = int(exponent_text)
    if abs(exponent) > MAX_EXPONENT:
        raise InexactValue("exponent out of range")
    digits = int(whole + fraction)
    scale = len(fraction) - exponent
    if digits and len(str(digits)) - scale > MAX_INTEGER_DIGITS:
        raise InexactValue("out of range")
    if scale <= 0:
        return digits * 10**-scale, 0
    return digits, scale


STEP_CACHE_SIZE = 4096


class Step:
    """An exact decimal step (tick size, lot size, asset precision): decimal string <-> integer count."""

    __slots__ = ("text", "multiplier", "decimals", "_scale", "_formatted", "_parsed")

    def __init__(self, text: str) -> None:
        digits, exponent = parse_decimal(text)
        if digits == 0:
            raise InexactValue("step must be positive")
        # Strip trailing zeros so "0.010" and "0.01" are the same step.
        while exponent > 0 and digits % 10 == 0:
            digits //= 10
            exponent -= 1
        self.multiplier = digits
        self.decimals = exponent
        self._scale = 10**exponent
        # A market sees the same few prices and sizes again and again; both caches are
        # bounded and emptied when full.
        self._formatted: dict[int, str] = {}
        self._parsed: dict[str, int] = {}
        self.text = self.format(1)

    @classmethod
    def from_decimals(cls, decimals: int) -> "Step":
        return cls("1" if decimals == 0 else "0." + "0" * (decimals - 1) + "1")

    def parse(self, text: object) -> int:
        """Return how many steps `text` is; raise InexactValue unless it is an exact multiple."""
        digits, exponent = parse_decimal(text)
        if exponent > self.decimals:
            excess = 10 ** (exponent - self.decimals)
            if digits % excess:
                raise InexactValue(f"not a multiple of {self.text}")
            digits //= excess
        elif exponent < self.decimals:
            digits *= 10 ** (self.decimals - exponent)
        count, remainder = divmod(digits, self.multiplier)
        if remainder:
            raise InexactValue(f"not a multiple of {self.text}")
        return count

    def parse_positive(self, text: object) -> int:
        count = self.parse(text)
        if count <= 0:
            raise InexactValue("must be greater than zero")
        return count

    def parse_positive_cached(self, text: str) -> int:
        """Return `parse_positive(text)`, remembering recent successful parses."""
        count = self._parsed.get(text)
        if count is None:
            count = self.parse_positive(text)
            if len(self._parsed) >= STEP_CACHE_SIZE:
                self._parsed.clear()
            self._parsed[text] = count
        return count

    def format_cached(self, count: int) -> str:
        """Return `format(count)`, remembering recent results."""
        text = self._formatted.get(count)
        if text is None:
            text = self.format(count)
            if len(self._formatted) >= STEP_CACHE_SIZE:
                self._formatted.clear()
            self._formatted[count] = text
        return text

    def format(self, count: int) -> str:
        """Render `count` steps as a decimal string with exactly `decimals` places."""
        value = count * self.multiplier
        if not self.decimals:
            return str(value)
        if value < 0:
            return "-" + self.format(-count)
        text = str(value).rjust(self.decimals + 1, "0")
        return f"{text[:-self.decimals]}.{text[-self.decimals:]}"

    def units_per(self, other: "Step") -> int:
        """How many `other` steps one of this step is; InexactValue unless a whole number."""
        return other.parse(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and (self.multiplier, self.decimals) == (other.multiplier, other.decimals)

    def __hash__(self) -> int:
        return hash((self.multiplier, self.decimals))

    def __repr__(self) -> str:
        return f"Step({self.text!r})"


CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
ASSET_SYMBOL = re.compile(r"[A-Z0-9]{1,12}")
PAIR_SYMBOL = re.compile(r"([A-Z0-9]{1,12})-([A-Z0-9]{1,12})")
