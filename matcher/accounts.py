"""Balances, locks and fee arithmetic; integers in each asset's smallest unit, no I/O.

Every account holds, per asset, an `available` and a `locked` amount. Placing an order
moves its worst-case cost from available to locked; fills consume the lock and credit
the other side; cancels and expiry hand the rest back. The fee account (id 0) collects
fees and pays maker rebates, so it alone may go below zero.

The engine mutates `available` / `locked` directly on the hot path; this module owns the
shapes, the fee rounding rule and the ledger invariants.
"""

from __future__ import annotations

FEE_ACCOUNT_ID = 0
BPS = 10_000


class Account:
    """One trader's balances, open orders and private event sequence number."""

    __slots__ = ("account_id", "available", "locked", "seq", "open_orders", "client_ids")

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id
        self.available: dict[str, int] = {}
        self.locked: dict[str, int] = {}
        self.seq = 0
        self.open_orders: dict[int, object] = {}
        self.client_ids: dict[str, object] = {}

    def balance(self, asset: str) -> tuple[int, int]:
        return self.available.get(asset, 0), self.locked.get(asset, 0)


def fee_for(amount: int, bps: int) -> int:
    """Return the fee on `amount` at `bps`: charges round up, rebates (negative) round toward zero.

    Both roundings favour the exchange by less than one unit, so the fee account never
    pays out more than the rebate rate allows and the ledger stays exact.
    """
    if bps >= 0:
        return -(-amount * bps // BPS)
    return -(amount * -bps // BPS)


class Ledger:
    """All accounts plus the per-asset net deposits that the balance invariant checks against."""

    __slots__ = ("accounts", "net_deposits")

    def __init__(self) -> None:
        self.accounts: dict[int, Account] = {FEE_ACCOUNT_ID: Account(FEE_ACCOUNT_ID)}
        self.net_deposits: dict[str, int] = {}

    def account(self, account_id: int) -> Account:
        """Return the account, creating an empty one on first use."""
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account(account_id)
        return account

    def deposit(self, account: Account, asset: str, amount: int) -> None:
        account.available[asset] = account.available.get(asset, 0) + amount
        self.net_deposits[asset] = self.net_deposits.get(asset, 0) + amount

    def withdraw(self, account: Account, asset: str, amount: int) -> bool:
        """Take `amount` out of available; False (and no change) when it is not there."""
        available = account.available.get(asset, 0)
        if amount > available:
            return False
        account.available[asset] = available - amount
        self.net_deposits[asset] = self.net_deposits.get(asset, 0) - amount
        return True

    def totals(self) -> dict[str, int]:
        """Return, per asset, the sum of every account's available and locked balance."""
        totals: dict[str, int] = {}
        for account in self.accounts.values():
            for book in (account.available, account.locked):
                for asset, amount in book.items():
                    totals[asset] = totals.get(asset, 0) + amount
        return totals

    def check_invariants(self) -> None:
        """Raise AssertionError on a negative trader balance or a ledger that does not sum up."""
        for account in self.accounts.values():
            for book in (account.available, account.locked):
                for asset, amount in book.items():
                    if amount < 0 and (account.account_id != FEE_ACCOUNT_ID or book is account.locked):
                        raise AssertionError(f"account {account.account_id}: {asset} balance {amount} < 0")
        totals = self.totals()
        for asset in set(totals) | set(self.net_deposits):
            if totals.get(asset, 0) != self.net_deposits.get(asset, 0):
                raise AssertionError(
                    f"{asset}: balances sum to {totals.get(asset, 0)}, net deposits are {self.net_deposits.get(asset, 0)}"
                )
