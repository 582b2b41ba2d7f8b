"""Money and exact quantities (PURE): the one rounding rule of rating.

METERING.md: "Money is never a float: integer minor units or
``decimal.Decimal`` with an explicit rounding rule".  The rule here:

* Prices are ``Decimal`` parsed from strings; they may be finer than the
  currency's minor unit (CometChat's $0.001 per minute, seed 002).
* Arithmetic is exact: quantities and prices become ``fractions.Fraction``
  (exact for every Decimal), so 1/1-second tariffs (x/60 minutes), prorated
  fees (x 16/31) and percentages never accumulate error.
* Each amount printed on an invoice -- a line amount, the tax -- is rounded
  **once**, ROUND_HALF_UP, to the currency's minor unit, from the exact
  value.  Subtotal and total are sums of already-rounded amounts, so the
  invoice always adds up as printed.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType

# ISO 4217 minor units of the currencies an operator is likely to bill in.
# A plan in another currency is refused rather than guessed: a wrong minor
# unit would round every line wrongly (JPY has none, KWD has three).
MINOR_UNITS: MappingProxyType[str, int] = MappingProxyType(
    {
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "CHF": 2,
        "CAD": 2,
        "AUD": 2,
        "NZD": 2,
        "SEK": 2,
        "NOK": 2,
        "DKK": 2,
        "PLN": 2,
        "CZK": 2,
        "RUB": 2,
        "INR": 2,
        "SGD": 2,
        "HKD": 2,
        "BRL": 2,
        "MXN": 2,
        "ZAR": 2,
        "CNY": 2,
        "JPY": 0,
        "KRW": 0,
        "BHD": 3,
        "KWD": 3,
        "OMR": 3,
    }
)

_DECIMAL_RE = re.compile(r"[0-9]+(\.[0-9]+)?")

QUANTITY_PLACES = 6
"""Decimal places of a quantity on an invoice when it has no exact decimal
form (e.g. 61 s at 1/1 = 1.016667 minutes); amounts are still computed from
the exact value."""


def parse_decimal(text: str) -> Decimal:
    """A plain non-negative decimal ('0.01', '100', '12.5'); ValueError otherwise.

    Exponents, signs, NaN and Infinity are refused: a price file is read by
    people, and '1e2' or '-0' in it is far more likely a typo than intent.
    """
    if not _DECIMAL_RE.fullmatch(text):
        raise ValueError(f'{text!r} is not a plain non-negative decimal such as "0.01"')
    return Decimal(text)


def round_money(value: Fraction, minor_digits: int) -> Decimal:
    """``value`` rounded half up to ``minor_digits`` places, exactly.

    Done in integers, not in a Decimal context, so the result never depends
    on a context precision: a value exactly halfway (x.xx5) always goes up.
    """
    if value < 0:
        raise ValueError("amounts are never negative in rating")
    scale = 10**minor_digits
    scaled = value * scale
    units = (scaled.numerator * 2 + scaled.denominator) // (2 * scaled.denominator)
    return Decimal(units).scaleb(-minor_digits).quantize(Decimal(1).scaleb(-minor_digits))


def to_decimal(value: Fraction) -> Decimal:
    """A quantity for display: exact when it has a finite decimal form with at
    most QUANTITY_PLACES places, else rounded half up to that many places."""
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    places = max(twos, fives)
    if den == 1 and places <= QUANTITY_PLACES:
        # n / (2^a 5^b) = n * (10^k / (2^a 5^b)) / 10^k exactly, in integers.
        digits = value.numerator * (10**places // value.denominator)
        return _plain(Decimal(digits).scaleb(-places))
    return _plain(round_money(value, QUANTITY_PLACES))


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros, and never in exponent form (1E+2 -> 100)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def fmt(value: Decimal) -> str:
    """A Decimal as a plain string ('80.90', '100000'), never in exponent form."""
    return format(value, "f")
