"""The seed API's numbers: integer cents and counts where they fit, exact JSON numbers otherwise.

The kalshibook SDK 0.1.0 reads prices as integer cents and sizes as integer contracts. Kalshi's
2026 data does not always fit: sub-penny prices (``0.0450`` dollars = ``4.5`` cents) and
fractional contracts (``12.50``). The rule: a value that is a whole number is sent as a JSON
integer (``42``); any other value is sent as the JSON number whose text is the exact decimal
(``4.5``, ``12.25``), never rounded. Python's ``json`` (and so the SDK) reads those as ``float``
with the same digits. A value whose exact text cannot survive a binary double (more than 15
significant digits: no price, and no count below 10**13 contracts, comes near) is an error, not a
rounded number.
"""

from __future__ import annotations

from decimal import Decimal

from kalshibook.domain.prices import units_to_price, units_to_size
from kalshibook.errors import KalshibookError

__all__ = ("cents", "cents_of_units", "exact_number", "quantity", "quantity_of_units")

_HUNDRED = Decimal(100)


class InexactNumber(KalshibookError):
    """A value cannot be sent as an exact JSON number."""


def exact_number(value: Decimal) -> int | float:
    """``value`` as a JSON-ready int (whole numbers) or a float whose shortest text is ``value``."""
    if not value.is_finite():
        raise InexactNumber(f"{value} is not a finite number")
    if value == value.to_integral_value():
        return int(value)
    out = float(value)
    if Decimal(repr(out)) != value:
        raise InexactNumber(f"{value} has no exact JSON number form")
    return out


def cents(dollars: Decimal) -> int | float:
    """Dollars → cents (``0.42`` → ``42``, ``0.045`` → ``4.5``)."""
    return exact_number(dollars * _HUNDRED)


def quantity(count: Decimal) -> int | float:
    """Contracts (``12.00`` → ``12``, ``12.50`` → ``12.5``)."""
    return exact_number(count)


def cents_of_units(units: int) -> int | float:
    """Integer micro-dollars (the book's units) → cents."""
    return cents(units_to_price(units))


def quantity_of_units(units: int) -> int | float:
    """Integer hundredths of a contract (the book's units) → contracts."""
    return quantity(units_to_size(units))
