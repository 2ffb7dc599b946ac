"""The writer's memoised binary ``numeric`` dumper: byte-identical to psycopg's, keyed by object."""

from __future__ import annotations

from decimal import Decimal

import psycopg
from psycopg import pq

from kalshibook.storage.copyworker import CachedNumericDumper as _CachedNumericDumper
from kalshibook.storage.copyworker import numeric_cache as _numeric_cache

_NUMERIC = psycopg.postgres.types["numeric"].oid


def test_same_bytes_as_psycopg_and_scale_kept() -> None:
    plain = psycopg.adapters.get_dumper_by_oid(_NUMERIC, pq.Format.BINARY)(Decimal)
    cached = _CachedNumericDumper(Decimal)
    values = [Decimal(s) for s in ("0.56", "0.5600", "12.00", "12", "-3.50", "0", "1E+3")]
    for _ in range(2):  # the second pass is served from the cache
        for v in values:
            assert bytes(cached.dump(v)) == bytes(plain.dump(v))
    # equal values of different scale are distinct entries, each with its own encoding
    a, b = Decimal("0.56"), Decimal("0.5600")
    assert a == b
    assert bytes(cached.dump(a)) != bytes(cached.dump(b))
    assert _numeric_cache[id(a)][0] is a
