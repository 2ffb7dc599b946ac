"""The exported tables: their columns (exact types), the SQL reading them, their order.

Pure description: no I/O. Each raw table is read one (market, UTC day) at a time, ordered the
way a replay needs it (trades by ``exchange_seq``, deltas and snapshots by ``(ts, epoch, seq)``,
quotes and stats by ``(ts, received_at)``). Kinds map to Arrow types:

- ``price``: ``decimal128(18, 6)`` (dollars, micro-dollar grid); ``size``: ``decimal128(18, 2)``
  (contracts, hundredths). CSV writes them as exact decimal strings with that scale.
- ``ts``: ``timestamp[us, tz=UTC]``; ``text``/``json``: string (``json`` holds JSON text);
  ``int64``/``int32``/``bool`` as named.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec
import pyarrow as pa

__all__ = (
    "CANDLE_TABLES",
    "RAW_TABLES",
    "TABLES",
    "Column",
    "TableSpec",
    "arrow_schema",
    "arrow_type",
    "dictionary_columns",
)

Kind = Literal["text", "json", "ts", "int64", "int32", "bool", "price", "size"]

PRICE_TYPE: Final = pa.decimal128(18, 6)
SIZE_TYPE: Final = pa.decimal128(18, 2)
TS_TYPE: Final = pa.timestamp("us", tz="UTC")
_ARROW: Final[dict[str, pa.DataType]] = {
    "text": pa.string(),
    "json": pa.string(),
    "ts": TS_TYPE,
    "int64": pa.int64(),
    "int32": pa.int32(),
    "bool": pa.bool_(),
    "price": PRICE_TYPE,
    "size": SIZE_TYPE,
}


class Column(msgspec.Struct, frozen=True):
    name: str
    kind: Kind
    expr: str = ""  # SQL expression when it is not the column itself
    distinct: bool = False  # text whose values are nearly all distinct (ids): no dictionary

    @property
    def select(self) -> str:
        if self.expr:
            return f"{self.expr} AS {self.name}"
        if self.kind in ("price", "size"):
            # trailing zeros of a wide numeric scale dropped exactly; an off-grid value still
            # fails the decimal conversion instead of being rounded
            return f"trim_scale({self.name}) AS {self.name}"
        return self.name


class TableSpec(msgspec.Struct, frozen=True):
    name: str
    relation: str  # market.<table>; "" for computed tables
    time_column: str
    columns: tuple[Column, ...]
    order_by: str
    # The per-day fingerprint: changes when rows are added, removed or re-ranked.
    fingerprint: str = "count(*)::text || '/' || coalesce(max(received_at)::text, '')"

    @property
    def select_list(self) -> str:
        return ", ".join(c.select for c in self.columns)


def _c(name: str, kind: Kind, expr: str = "", *, distinct: bool = False) -> Column:
    return Column(name, kind, expr, distinct)


TRADES: Final = TableSpec(
    "trades",
    "market.trades",
    "ts",
    (
        _c("ts", "ts"),
        _c("exchange_seq", "int64"),
        _c("trade_id", "text", "trade_id::text", distinct=True),
        _c("market_ticker", "text"),
        _c("yes_price", "price"),
        _c("no_price", "price"),
        _c("count", "size"),
        _c("taker_outcome_side", "text"),
        _c("taker_book_side", "text"),
        _c("is_block_trade", "bool"),
        _c("source", "text"),
        _c("created_time", "ts"),
        _c("received_at", "ts"),
    ),
    "exchange_seq, trade_id",
    fingerprint=(
        "count(*)::text || '/' || coalesce(max(received_at)::text, '') || '/' "
        "|| coalesce(sum(exchange_seq)::text, '') || '/' || count(*) FILTER (WHERE source = 'rest')"
    ),
)
DELTAS: Final = TableSpec(
    "deltas",
    "market.orderbook_deltas",
    "ts",
    (
        _c("ts", "ts"),
        _c("market_ticker", "text"),
        _c("epoch", "int64"),
        _c("seq", "int64"),
        _c("sid", "int32"),
        _c("side", "text"),
        _c("price", "price"),
        _c("delta", "size"),
        _c("received_at", "ts"),
    ),
    "ts, epoch, seq",
)
SNAPSHOTS: Final = TableSpec(
    "snapshots",
    "market.orderbook_snapshots",
    "ts",
    (
        _c("ts", "ts"),
        _c("market_ticker", "text"),
        _c("epoch", "int64"),
        _c("seq", "int64"),
        _c("sid", "int32"),
        _c("source", "text"),
        _c("yes_bids", "json", "yes_bids::text"),
        _c("no_bids", "json", "no_bids::text"),
        _c("received_at", "ts"),
    ),
    "ts, epoch, seq NULLS FIRST",
)
QUOTES: Final = TableSpec(
    "quotes",
    "market.quotes",
    "ts",
    (
        _c("ts", "ts"),
        _c("market_ticker", "text"),
        _c("yes_bid", "price"),
        _c("yes_bid_size", "size"),
        _c("yes_ask", "price"),
        _c("yes_ask_size", "size"),
        _c("received_at", "ts"),
    ),
    "ts, received_at",
)
MARKET_STATS: Final = TableSpec(
    "market_stats",
    "market.market_stats",
    "ts",
    (
        _c("ts", "ts"),
        _c("market_ticker", "text"),
        _c("price", "price"),
        _c("yes_bid", "price"),
        _c("yes_ask", "price"),
        _c("yes_bid_size", "size"),
        _c("yes_ask_size", "size"),
        _c("last_trade_size", "size"),
        _c("volume", "size"),
        _c("open_interest", "size"),
        _c("dollar_volume", "int64"),
        _c("dollar_open_interest", "int64"),
        _c("received_at", "ts"),
    ),
    "ts, received_at",
)
SETTLEMENTS: Final = TableSpec(
    "settlements",
    "market.settlements",
    "settled_at",
    (
        _c("market_ticker", "text"),
        _c("event_ticker", "text"),
        _c("series_ticker", "text"),
        _c("result", "text"),
        _c("settlement_value", "price"),
        _c("determined_at", "ts"),
        _c("settled_at", "ts"),
        _c("source", "text"),
        _c("confirmed", "bool"),
        _c("updated_at", "ts"),
    ),
    "market_ticker",
    fingerprint="count(*)::text || '/' || coalesce(max(updated_at)::text, '')",
)
_CANDLE_COLUMNS: Final = (
    _c("start", "ts"),
    _c("end", "ts"),
    _c("market_ticker", "text"),
    _c("open", "price"),
    _c("high", "price"),
    _c("low", "price"),
    _c("close", "price"),
    _c("volume", "size"),
    _c("vwap", "price"),
    _c("trade_count", "int64"),
    _c("taker_yes_volume", "size"),
    _c("taker_no_volume", "size"),
    _c("previous", "price"),
    _c("yes_bid_open", "price"),
    _c("yes_bid_high", "price"),
    _c("yes_bid_low", "price"),
    _c("yes_bid_close", "price"),
    _c("yes_ask_open", "price"),
    _c("yes_ask_high", "price"),
    _c("yes_ask_low", "price"),
    _c("yes_ask_close", "price"),
    _c("open_interest", "size"),
)
CANDLE_TABLES: Final = {
    f"candles_{i}": TableSpec(f"candles_{i}", "", "start", _CANDLE_COLUMNS, "start")
    for i in ("1m", "1h", "1d")
}
RAW_TABLES: Final = {t.name: t for t in (TRADES, DELTAS, SNAPSHOTS, QUOTES, MARKET_STATS)}
TABLES: Final[dict[str, TableSpec]] = {**RAW_TABLES, "settlements": SETTLEMENTS, **CANDLE_TABLES}


def arrow_type(kind: Kind) -> pa.DataType:
    return _ARROW[kind]


def dictionary_columns(spec: TableSpec) -> list[str]:
    """The columns Parquet dictionary-encodes: text with few distinct values (tickers, enums).
    Times, numbers, ids and JSON books are nearly unique: a dictionary there only costs time."""
    return [c.name for c in spec.columns if c.kind == "text" and not c.distinct]


def arrow_schema(spec: TableSpec) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c.kind)) for c in spec.columns])
