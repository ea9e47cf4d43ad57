"""The account: balances per asset, what they can cover, and their value in one currency.

:class:`Account` is the seam the risk gate, the simulated venue and the portfolio use;
:class:`SpotCashAccount` implements it for cash (non-margin) spot trading. A margin or
derivatives account (issue 12: leverage, initial and maintenance margin, funding,
liquidation) implements the same protocol.
"""

from tradebus.account.base import Account
from tradebus.account.margin import MarginAccount, borrow_assets
from tradebus.account.spot import SpotCashAccount, asset_names

__all__ = ["Account", "MarginAccount", "SpotCashAccount", "asset_names", "borrow_assets"]
