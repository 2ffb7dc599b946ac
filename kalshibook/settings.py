"""Typed settings, read once from ``KALSHIBOOK_*`` environment variables and passed down.

Every field of every section maps to one variable: ``KALSHIBOOK_<SECTION>_<FIELD>`` (the
``core`` section has no section prefix, e.g. ``KALSHIBOOK_DATABASE_URL``). ``Settings.from_env``
validates everything at start and raises :class:`ConfigError` naming the bad variable.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple, get_type_hints

import msgspec

from kalshibook.domain.booleans import parse_bool
from kalshibook.errors import ConfigError

PROD_REST_URL = "https://external-api.kalshi.com/trade-api/v2"
PROD_WS_URL = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"


class CoreSettings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = ""
    """PostgreSQL/TimescaleDB URL (``postgresql://user:pass@host:port/db``)."""
    log_level: str = "INFO"
    """Python logging level: DEBUG, INFO, WARNING, ERROR."""
    data_dir: str = ".data"
    """Local state: spool files, simulator truth, demo pids."""
    refuse_superuser: bool = False
    """`collect` and `serve` refuse to start when their database login is a superuser (compose
    sets true); false: they start with a loud warning. Give them `kalshibook service-user`
    logins."""


class KalshiSettings(msgspec.Struct, frozen=True, kw_only=True):
    rest_url: str = PROD_REST_URL
    """Kalshi REST base URL including /trade-api/v2 (the simulator in the demo and tests)."""
    ws_url: str = PROD_WS_URL
    """Kalshi WebSocket URL (path /trade-api/ws/v2)."""
    key_id: str = ""
    """Kalshi API key id (UUID) sent as KALSHI-ACCESS-KEY."""
    private_key_path: str = ""
    """PEM file of the Kalshi private key (RSA or Ed25519) used to sign requests."""
    rest_rate: float = 15.0
    """REST requests per second (token bucket refill; 0: no limit). Kalshi Basic tier ≈ 20
    GETs/s."""
    rest_burst: int = 20
    """REST token-bucket capacity (requests that may go out back to back)."""
    rest_max_retries: int = 8
    """Retries of a REST request answered 429 or 5xx (backoff; Kalshi sends no Retry-After)."""
    rest_timeout: float = 15.0
    """Seconds before a REST request times out."""
    ws_silence_timeout: float = 30.0
    """Close and reopen a socket silent for this many seconds (Kalshi pings every 10 s; 0:
    never)."""
    reconnect_initial: float = 0.5
    """First WebSocket reconnect delay in seconds (jittered, doubles per failure)."""
    reconnect_max: float = 30.0
    """Cap of the WebSocket reconnect delay in seconds."""

    def __post_init__(self) -> None:
        check_bounds("kalshi", self)


class CollectorSettings(msgspec.Struct, frozen=True, kw_only=True):
    orderbook_sub_size: int = 250
    """Markets per orderbook_delta subscription."""
    checkpoint_deltas: int = 500
    """Write a checkpoint snapshot of a book after this many deltas ..."""
    checkpoint_seconds: float = 300.0
    """... or after this many seconds with at least one delta, whichever comes first."""
    discovery_interval: float = 300.0
    """Seconds between REST sweeps for new/changed markets."""
    metrics_host: str = "127.0.0.1"
    """Interface of the collector metrics/health HTTP server."""
    metrics_port: int = 9108
    """Prometheus metrics + health port (0 disables)."""
    settlement_confirm_retries: int = 8
    """REST attempts to confirm a settlement after the lifecycle event."""

    def __post_init__(self) -> None:
        check_bounds("collector", self)


class WriterSettings(msgspec.Struct, frozen=True, kw_only=True):
    batch_rows: int = 10_000
    """A table's rows are due for writing once this many are queued; also the most rows one COPY
    transaction takes."""
    # 10,000 (was 5,000): fewer, larger COPY transactions cost PostgreSQL and the feed less per
    # row (bench_collector: ~+7 % frames/s; 20,000 measured no better), and the age bound below,
    # not the size, still decides latency at ordinary rates.
    batch_age: float = 0.2
    """... or once the oldest has waited this many seconds. Due rows go to the next free COPY
    worker; while all are busy they keep gathering (fewer, larger transactions under load)."""
    memory_rows: int = 200_000
    """Rows held in memory (all tables) while the database is down before spooling to disk."""
    queue_rows: int = 50_000
    """Bound of each per-table queue; producers wait (backpressure) when it is full."""
    spool_dir: str = ""
    """Directory for on-disk spool files (default: <data_dir>/spool)."""
    retry_max: float = 5.0
    """Cap in seconds of the backoff between database write retries."""
    connections: int = 2
    """Batches written at once, each by its own COPY worker process and connection (never two of
    one table at once)."""

    def __post_init__(self) -> None:
        check_bounds("writer", self)


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    """Interface the API listens on."""
    port: int = 8000
    """Port the API listens on (0: any free port)."""
    max_limit: int = 1000
    """Largest page size a client may ask for (`limit`)."""
    default_limit: int = 100
    """Page size when `limit` is not given (at most the largest page size)."""
    max_candles: int = 10_000
    """Most candles one request may return."""
    rate_limit_per_second: float = 50.0
    """Requests per second per API key before 429 (> 0; for no practical limit set a large value
    such as 1000000)."""
    require_auth: bool = True
    """Require API keys (set false only for local development)."""
    request_timeout: float = 10.0
    """Seconds one request may take in all (every query, and sending the response); past it a
    504, charged."""
    export_timeout: float = 300.0
    """Seconds one `GET /v1/exports/{table}` request may take in all (building the file, and
    sending it); the other routes keep the request timeout."""
    max_concurrent_exports: int = 4
    """Export files built at once (each holds a database connection for up to the export
    timeout); one more is a 503 at once, not charged."""
    max_connections: int = 256
    """Client connections the API serves at once; beyond, new requests get a 503 at once (with
    the per-response memory bound, this bounds the API's memory)."""
    max_concurrent_per_key: int = 4
    """Requests of one API key served at once; more are a 429 at once (no queueing)."""
    seconds_per_credit: float = 2.0
    """A request is charged one extra credit per this many seconds it held the database (a slow
    request is not free; 0 disables)."""
    cursor_secret: str = ""
    """Key that signs pagination cursors (≥ 32 characters; the same for every API process of a
    deployment). Empty: <data_dir>/cursor_secret, generated with mode 0600 at first start."""

    def __post_init__(self) -> None:
        check_bounds("api", self)
        if self.default_limit > self.max_limit:
            raise ConfigError(
                f"{env_var('api', 'default_limit')}={self.default_limit} is invalid: expected 1 "
                f"to {env_var('api', 'max_limit')} ({self.max_limit})"
            )


class ReplicaSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Read replicas of the API (PostgreSQL streaming standbys of ``KALSHIBOOK_DATABASE_URL``)."""

    urls: str = ""
    """Comma-separated read-only database URLs, one per replica (so not a libpq multi-host URL);
    the API sends each request's reads to one of them (credits, usage and keys stay on the
    primary). Empty: everything on the primary."""
    max_lag_seconds: float = 10.0
    """A replica further behind the primary than this gets no reads until it catches up."""
    fallback: str = "primary"
    """With no healthy replica: `primary` serves the reads, `unavailable` answers 503."""
    check_interval: float = 1.0
    """Seconds between two lag checks of every replica."""

    def __post_init__(self) -> None:
        if self.fallback not in ("primary", "unavailable"):
            raise ConfigError(
                f"KALSHIBOOK_REPLICA_FALLBACK={self.fallback!r} is invalid: "
                "expected primary or unavailable"
            )
        check_bounds("replica", self)
        for url in self.url_list():
            if not url.startswith(("postgresql://", "postgres://")):
                raise ConfigError(
                    "KALSHIBOOK_REPLICA_URLS holds an entry that is not a postgresql:// URL"
                )

    def url_list(self) -> list[str]:
        return [u.strip() for u in self.urls.split(",") if u.strip()]


class StorageSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Compression and retention policies (Community edition; applied by ``kalshibook migrate``).

    A chunk is compressed once all of it is older than its table's compress-after; tables the
    candles read (trades, quotes, market_stats) wait at least 7 days, past the 1d refresh window.
    Retention is opt-in (0 keeps everything: kalshibook is a permanent record)."""

    trades_compress_after_days: float = 14.0
    """Compress trades chunks older than this (≥ 7: the 1d candle refresh window; 0 = never)."""
    quotes_compress_after_days: float = 14.0
    """Compress quotes chunks older than this (≥ 7, or 0 = never)."""
    market_stats_compress_after_days: float = 14.0
    """Compress market_stats chunks older than this (≥ 7, or 0 = never)."""
    orderbook_deltas_compress_after_days: float = 2.0
    """Compress orderbook_deltas chunks older than this (≥ 1, or 0 = never; the largest table)."""
    orderbook_snapshots_compress_after_days: float = 2.0
    """Compress orderbook_snapshots chunks older than this (≥ 1, or 0 = never)."""
    lifecycle_events_compress_after_days: float = 30.0
    """Compress lifecycle_events chunks older than this (≥ 1, or 0 = never)."""
    candles_1m_compress_after_days: float = 30.0
    """Compress the 1m candle aggregates' chunks older than this (≥ 1, or 0 = never)."""
    candles_1h_compress_after_days: float = 90.0
    """Compress the 1h candle aggregates' chunks older than this (≥ 7, or 0 = never)."""
    orderbook_deltas_retention_days: float = 0.0
    """Drop orderbook_deltas chunks older than this (0 = keep forever; opt-in)."""
    orderbook_snapshots_retention_days: float = 0.0
    """Drop orderbook_snapshots chunks older than this (0 = keep forever; opt-in)."""
    quotes_retention_days: float = 0.0
    """Drop quotes chunks older than this (0 = keep forever; opt-in; ≥ 8: candles read them)."""
    market_stats_retention_days: float = 0.0
    """Drop market_stats chunks older than this (0 = keep forever; opt-in; ≥ 8: candles)."""

    def __post_init__(self) -> None:
        deltas = self.orderbook_deltas_retention_days
        snapshots = self.orderbook_snapshots_retention_days
        if snapshots and (not deltas or snapshots < deltas):
            deltas_var = env_var("storage", "orderbook_deltas_retention_days")
            raise ConfigError(
                f"{env_var('storage', 'orderbook_snapshots_retention_days')}={snapshots:g} is "
                "invalid: books are rebuilt from a snapshot plus later deltas, so snapshots must "
                f"be kept at least as long as deltas ({deltas_var}={deltas:g}; 0 = forever)"
            )
        for name, floor in STORAGE_FLOORS.items():
            value = getattr(self, name)
            if value != 0 and not floor <= value <= STORAGE_MAX_DAYS:  # NaN/inf fail too
                raise ConfigError(
                    f"{env_var('storage', name)}={value:g} is invalid: expected 0 (never) or "
                    f"{floor:g} to {STORAGE_MAX_DAYS:g} days"
                )


# Smallest non-zero value of each storage policy setting, in days. Tables the candles read must
# not be compressed inside the 1d refresh window (7 days: an insert into a compressed chunk costs a
# decompression and an invalidation, timescale/timescaledb#3724), and must not lose raw rows a
# refresh still reads (a refresh over dropped raw rows would erase materialised candles).
STORAGE_MAX_DAYS = 36_500.0
STORAGE_FLOORS: dict[str, float] = {
    "trades_compress_after_days": 7.0,
    "quotes_compress_after_days": 7.0,
    "market_stats_compress_after_days": 7.0,
    "orderbook_deltas_compress_after_days": 1.0,
    "orderbook_snapshots_compress_after_days": 1.0,
    "lifecycle_events_compress_after_days": 1.0,
    "candles_1m_compress_after_days": 1.0,
    "candles_1h_compress_after_days": 7.0,
    "orderbook_deltas_retention_days": 1.0,
    "orderbook_snapshots_retention_days": 1.0,
    "quotes_retention_days": 8.0,
    "market_stats_retention_days": 8.0,
}


class Bound(NamedTuple):
    """The values a numeric setting accepts: ``low`` to ``high`` (NaN and infinity never)."""

    low: float
    high: float
    unit: str = ""
    zero: str = ""
    """What 0 means when it is accepted below ``low`` (e.g. ``disabled``); empty: it is not."""


# Every numeric setting outside ``storage`` (STORAGE_FLOORS), checked by its section's
# ``__post_init__``: a value out of range fails at start, naming the variable and the range, instead
# of failing later (a traceback, a 500 on every request, a message naming no variable).
BOUNDS: dict[str, dict[str, Bound]] = {
    "kalshi": {
        "rest_rate": Bound(0.01, 1_000_000, "requests per second", zero="no limit"),
        "rest_burst": Bound(1, 1_000_000),
        "rest_max_retries": Bound(0, 1000),
        "rest_timeout": Bound(0.1, 600, "seconds"),
        "ws_silence_timeout": Bound(0.1, 3600, "seconds", zero="never"),
        "reconnect_initial": Bound(0.001, 3600, "seconds"),
        "reconnect_max": Bound(0.001, 3600, "seconds"),
    },
    "collector": {
        "orderbook_sub_size": Bound(1, 1_000_000),
        "checkpoint_deltas": Bound(1, 100_000_000),
        "checkpoint_seconds": Bound(1, 86_400, "seconds"),
        "discovery_interval": Bound(1, 86_400, "seconds"),
        "metrics_port": Bound(1, 65_535, zero="disabled"),
        "settlement_confirm_retries": Bound(1, 1000),
    },
    "writer": {
        "batch_rows": Bound(1, 10_000_000),
        "batch_age": Bound(0.001, 3600, "seconds"),
        "memory_rows": Bound(0, 1_000_000_000),
        "queue_rows": Bound(1, 100_000_000),
        "retry_max": Bound(0.01, 3600, "seconds"),
        "connections": Bound(1, 64),
    },
    "api": {
        "port": Bound(1, 65_535, zero="any free port"),
        "max_limit": Bound(1, 1_000_000),
        "default_limit": Bound(1, 1_000_000),
        "max_candles": Bound(1, 10_000_000),
        "rate_limit_per_second": Bound(0.01, 1_000_000_000, "requests per second"),
        "request_timeout": Bound(0.1, 600, "seconds"),
        "export_timeout": Bound(0.1, 3600, "seconds"),
        "max_concurrent_exports": Bound(1, 1000),
        "max_connections": Bound(1, 100_000),
        "max_concurrent_per_key": Bound(1, 1000),
        "seconds_per_credit": Bound(0.001, 86_400, "seconds", zero="disabled"),
    },
    "replica": {
        "max_lag_seconds": Bound(0.1, 86_400, "seconds"),
        "check_interval": Bound(0.05, 3600, "seconds"),
    },
}


def check_bounds(section: str, values: msgspec.Struct) -> None:
    """Raise :class:`ConfigError` naming the variable and its range when a numeric field of
    ``values`` (the settings section ``section``) is outside its :data:`BOUNDS`."""
    for name, bound in BOUNDS[section].items():
        value = getattr(values, name)
        if bound.zero and value == 0:
            continue
        if not bound.low <= value <= bound.high:  # NaN and infinity fail too
            zero = f"0 ({bound.zero}) or " if bound.zero else ""
            unit = f" {bound.unit}" if bound.unit else ""
            raise ConfigError(
                f"{env_var(section, name)}={_number(value)} is invalid: expected "
                f"{zero}{_number(bound.low)} to {_number(bound.high)}{unit}"
            )


def _number(value: float) -> str:
    """``100000`` rather than ``1e+05``; fractions as ``:g``."""
    if isinstance(value, int) or (value == value and abs(value) < 1e15 and value == int(value)):
        return str(int(value))
    return f"{value:g}"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    core: CoreSettings = msgspec.field(default_factory=CoreSettings)
    kalshi: KalshiSettings = msgspec.field(default_factory=KalshiSettings)
    collector: CollectorSettings = msgspec.field(default_factory=CollectorSettings)
    writer: WriterSettings = msgspec.field(default_factory=WriterSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    replica: ReplicaSettings = msgspec.field(default_factory=ReplicaSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        sections: dict[str, Any] = {}
        for section_name, section_type in get_type_hints(cls).items():
            values: dict[str, Any] = {}
            for field in msgspec.structs.fields(section_type):
                var = env_var(section_name, field.name)
                if var not in env:
                    continue
                values[field.name] = _parse(var, env[var], field.type)
            sections[section_name] = section_type(**values)
        settings = cls(**sections)
        level = settings.core.log_level.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(
                f"KALSHIBOOK_LOG_LEVEL={settings.core.log_level!r} is invalid: "
                "expected DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        return settings

    def require_database(self) -> str:
        if not self.core.database_url:
            raise ConfigError(
                "KALSHIBOOK_DATABASE_URL is not set (e.g. postgresql://user:pass@host:5432/db; "
                "`make db` starts a local one and writes its URL to .data/database_url)"
            )
        return self.core.database_url

    @property
    def spool_dir(self) -> Path:
        return Path(self.writer.spool_dir or Path(self.core.data_dir) / "spool")


OTHER_VARIABLES: Final = frozenset(
    {
        "KALSHIBOOK_DB_EDITION",
        "KALSHIBOOK_DB_PORT",
        "KALSHIBOOK_API_DATABASE_URL",
        "KALSHIBOOK_COLLECTOR_DATABASE_URL",
    }
)
"""``KALSHIBOOK_`` variables that are not settings of the program: scripts/db.sh's and
compose.yaml's (see .env.example); also every name under ``OTHER_PREFIXES``."""
OTHER_PREFIXES: Final = ("KALSHIBOOK_TEST_", "KALSHIBOOK_DEMO_", "KALSHIBOOK_TSDB_")
"""The test suite's, scripts/demo.sh's and scripts/install_timescaledb.sh's variables."""


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``KALSHIBOOK_*`` names in ``environ`` that no setting reads (a misspelling is otherwise
    silently ignored), each with the closest setting's name, if one is close."""
    known = {name for name, _ in all_env_vars()}
    out: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        if not name.startswith("KALSHIBOOK_") or name in known or name in OTHER_VARIABLES:
            continue
        if name.startswith(OTHER_PREFIXES):
            continue
        longer = sorted(k for k in known if k.startswith(name))  # a name cut short
        close = longer or difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        out.append((name, close[0] if close else None))
    return out


def env_var(section: str, field: str) -> str:
    prefix = "KALSHIBOOK_" if section == "core" else f"KALSHIBOOK_{section.upper()}_"
    return prefix + field.upper()


def all_env_vars() -> list[tuple[str, Any]]:
    """Every variable with its default, for docs and ``.env.example``."""
    out: list[tuple[str, Any]] = []
    defaults = Settings()
    for section_name in get_type_hints(Settings):
        section = getattr(defaults, section_name)
        for field in msgspec.structs.fields(type(section)):
            out.append((env_var(section_name, field.name), getattr(section, field.name)))
    return out


def _parse(var: str, raw: str, typ: Any) -> Any:
    text = raw.strip()
    try:
        if typ is bool:
            flag = parse_bool(text)
            if flag is None:
                raise ValueError("expected true/false")
            return flag
        if typ is int:
            return int(text)
        if typ is float:
            value = float(text)
            if value != value or value < 0:  # NaN or negative
                raise ValueError("expected a non-negative number")
            return value
        return text
    except ValueError as exc:
        raise ConfigError(f"{var}={raw!r} is invalid: {exc}") from None
