"""The COPY worker's binary ``numeric`` dumper: byte-identical to psycopg's, keyed by the text."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg import pq

from kalshibook.storage.copyworker import NumericTextDumper

_NUMERIC = psycopg.postgres.types["numeric"].oid


def test_same_bytes_as_psycopg_and_scale_kept() -> None:
    plain = psycopg.adapters.get_dumper_by_oid(_NUMERIC, pq.Format.BINARY)(Decimal)
    dumper = NumericTextDumper(str)
    texts = ["0.56", "0.5600", "12.00", "12", "-3.50", "0", "1E+3"]
    for _ in range(2):  # the second pass is served from the cache
        for t in texts:
            assert bytes(dumper.dump(t)) == bytes(plain.dump(Decimal(t)))
    # equal values of different scale are distinct entries, each with its own encoding
    assert bytes(dumper.dump("0.56")) != bytes(dumper.dump("0.5600"))


def test_bad_values_are_row_errors() -> None:
    dumper = NumericTextDumper(str)
    with pytest.raises(ValueError, match="invalid numeric"):
        dumper.dump("12,5")
    with pytest.raises(TypeError, match="numeric column got Decimal"):
        dumper.dump(Decimal("1"))  # the worker always receives text
