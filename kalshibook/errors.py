"""One exception tree for kalshibook.

Every error the project raises on purpose derives from :class:`KalshibookError`. The edges translate
them: the CLI prints ``str(exc)`` on one line and exits with ``exit_code``; the API maps them to
RFC 9457 problem+json responses with ``status``.
"""

from __future__ import annotations


class KalshibookError(Exception):
    """kalshibook failed."""

    exit_code: int = 1
    status: int = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "error").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(KalshibookError):
    """A value given to an operation is invalid (domain and storage; the edges translate it)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The name of the offending input (a parameter, option or column), when known."""


class UnknownObject(KalshibookError):
    """The object an operation names does not exist (an API key prefix, a role, ...)."""

    status = 404

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The name of the input that named it, when known."""


class ConfigError(KalshibookError):
    """A setting is missing or invalid."""

    exit_code = 2


class KeyFileError(ConfigError):
    """The Kalshi private key cannot be loaded."""


class StorageError(KalshibookError):
    """The database failed."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached."""

    status = 503


class SchemaError(StorageError):
    """The database schema is missing or not at the expected revision."""


class UnknownMarket(KalshibookError):
    """No market with this ticker is recorded (no market record, trade, quote or ticker update)."""

    status = 404

    def __init__(self, ticker: str) -> None:
        super().__init__(
            f"market {ticker!r} is unknown: no market record and no recorded trade, quote or "
            "ticker update"
        )
        self.ticker = ticker


class FeedError(KalshibookError):
    """The Kalshi feed failed."""


class ProtocolError(FeedError):
    """A frame or response does not follow Kalshi's protocol."""


class FatalFeedError(FeedError):
    """The exchange refused us in a way retrying will not fix (e.g. bad credentials)."""


class KalshiHTTPError(FeedError):
    """Kalshi answered a REST request with an error."""

    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"Kalshi REST {status} for {url}: {body[:200]}")
        self.http_status = status
        self.body = body
        self.url = url


class BookError(KalshibookError):
    """An order-book operation was invalid."""


class ApiError(KalshibookError):
    """An API request cannot be served."""

    status = 400

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class BadRequest(ApiError):
    """The request is invalid."""

    status = 400


class NotFound(ApiError):
    """The requested object does not exist."""

    status = 404


class Unauthorized(ApiError):
    """The API key is missing, unknown or revoked."""

    status = 401


class PaymentRequired(ApiError):
    """The API key has no credits left."""

    status = 402


class RateLimited(ApiError):
    """Too many requests for this API key."""

    status = 429


class DeadlineExceeded(ApiError):
    """The request ran past its deadline (all its queries together); charged, not refunded."""

    status = 504


class FeedDisconnected(FeedError):
    """The Kalshi WebSocket connection is closed."""


class WsCommandError(FeedError):
    """Kalshi answered a WebSocket command with an error frame."""

    def __init__(
        self,
        code: int,
        msg: str,
        cmd: str = "",
        cmd_id: int | None = None,
        market_tickers: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"Kalshi WS {cmd or 'command'} (id {cmd_id}) failed: code {code} {msg}")
        self.code = code
        self.msg = msg
        self.cmd = cmd
        self.cmd_id = cmd_id
        self.market_tickers = market_tickers
        """Markets the error names (e.g. unknown tickers of a subscribe), when Kalshi says."""
