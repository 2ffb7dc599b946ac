"""``kalshibook sim``: run the local Kalshi-protocol exchange.

The main CLI wires :func:`add_arguments` and :func:`run` (logging already configured);
``python -m kalshibook.sim`` calls :func:`main`, which configures the same logging at INFO.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import NoReturn

from kalshibook.cli.logs import configure_logging
from kalshibook.errors import KalshibookError, KeyFileError
from kalshibook.kalshi.auth import load_public_key
from kalshibook.sim.server import SimConfig, SimServer

__all__ = ("add_arguments", "main", "run")

DESCRIPTION = (
    "Run a local exchange that speaks Kalshi's 2026 market-data protocol: REST under "
    "/trade-api/v2 and the WebSocket /trade-api/ws/v2 on one port, with signed-request auth, "
    "seeded markets that trade and settle on a compressed clock, ground-truth output and fault "
    "injection for tests and benchmarks."
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value != value or value < 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None


def _key(text: str) -> tuple[str, str]:
    key_id, sep, path = text.partition("=")
    if not sep or not key_id.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected KEY_ID=PATH, got {text!r}")
    try:
        load_public_key(path.strip())
    except KeyFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return key_id.strip(), path.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``kalshibook sim`` flag to ``parser``."""
    if parser.description is None:
        parser.description = DESCRIPTION
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    net.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port for REST and WebSocket; 0 picks a free one and prints it (default: %(default)s)",
    )
    net.add_argument(
        "--ready-file",
        metavar="PATH",
        help='write "host:port" to PATH once listening (removed on exit)',
    )

    mkt = parser.add_argument_group("market model")
    mkt.add_argument("--seed", type=_seed, default=1, help="random seed (default: %(default)s)")
    mkt.add_argument(
        "--markets",
        type=_positive_int,
        default=50,
        metavar="N",
        help="open markets at start (default: %(default)s)",
    )
    mkt.add_argument(
        "--rate",
        type=_seconds,
        default=200.0,
        metavar="FRAMES_PER_S",
        help="data frames per second across all channels (default: %(default)s)",
    )
    mkt.add_argument(
        "--lifetime",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="trading life of a market on the compressed clock (default: %(default)s)",
    )
    mkt.add_argument(
        "--new-markets-per-min",
        type=_seconds,
        default=None,
        metavar="N",
        help="new markets per minute (default: steady state, markets*60/lifetime)",
    )
    mkt.add_argument(
        "--history-hours",
        type=_seconds,
        default=0.0,
        metavar="HOURS",
        help="generate this many hours of exchange history before listening (markets created, "
        "traded and settled; the /historical/cutoff lies in its middle) (default: %(default)s)",
    )
    mkt.add_argument(
        "--history-rate",
        type=_seconds,
        default=20.0,
        metavar="FRAMES_PER_S",
        help="data frames per exchange second in the generated history (default: %(default)s)",
    )
    mkt.add_argument(
        "--truth",
        metavar="PATH",
        help="write ground truth (JSON Lines: trades, books, lifecycle, "
        "settlements, catalogue) to PATH",
    )

    auth = parser.add_argument_group("authentication")
    auth.add_argument(
        "--public-key",
        type=_key,
        action="append",
        default=[],
        metavar="KEY_ID=PATH",
        help="accept requests signed by this key id with the public (or private) "
        "key PEM at PATH; repeatable",
    )
    auth.add_argument(
        "--no-auth", action="store_true", help="do not verify KALSHI-ACCESS-* signature headers"
    )
    auth.add_argument(
        "--auth-window",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="largest accepted clock difference of KALSHI-ACCESS-TIMESTAMP (default: %(default)s)",
    )
    auth.add_argument(
        "--heartbeat",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between server pings; 0 = none (default: %(default)s)",
    )

    faults = parser.add_argument_group("faults (0 = off)")
    faults.add_argument(
        "--drop-every",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="abruptly close every WebSocket every SECONDS",
    )
    faults.add_argument(
        "--skip-seq-every",
        type=_positive_int,
        default=0,
        metavar="N",
        help="skip one seq number every N sequenced frames per connection",
    )
    faults.add_argument(
        "--malformed-every",
        type=_positive_int,
        default=0,
        metavar="N",
        help="send a malformed (truncated JSON) frame every N data frames",
    )
    faults.add_argument(
        "--error-every",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="fail one subscription per connection with --error-code every SECONDS",
    )
    faults.add_argument(
        "--error-code",
        type=int,
        choices=(10, 25),
        default=10,
        help="terminal error code for --error-every: 10 channel error, "
        "25 buffer overflow (default: %(default)s)",
    )
    faults.add_argument(
        "--rest-429-burst",
        type=_positive_int,
        default=0,
        metavar="N",
        help='answer N REST requests with 429 {"error":"too many requests"} every --rest-429-every',
    )
    faults.add_argument(
        "--rest-429-every",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="period of --rest-429-burst",
    )
    faults.add_argument(
        "--stall-every",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="stop sending anything for --stall-for every SECONDS",
    )
    faults.add_argument(
        "--stall-for", type=_seconds, default=0.0, metavar="SECONDS", help="length of each stall"
    )


def _config(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        markets=args.markets,
        rate=args.rate,
        lifetime=max(1.0, args.lifetime),
        new_markets_per_min=args.new_markets_per_min,
        history_hours=args.history_hours,
        history_rate=args.history_rate,
        public_keys=dict(args.public_key),
        no_auth=args.no_auth,
        auth_window=args.auth_window,
        truth_path=args.truth,
        ready_file=args.ready_file,
        heartbeat=args.heartbeat,
        drop_every=args.drop_every,
        skip_seq_every=args.skip_seq_every,
        malformed_every=args.malformed_every,
        error_every=args.error_every,
        error_code=args.error_code,
        rest_429_burst=args.rest_429_burst,
        rest_429_every=args.rest_429_every,
        stall_every=args.stall_every,
        stall_for=args.stall_for,
    )


def _check(args: argparse.Namespace) -> str | None:
    if not args.no_auth and not args.public_key:
        return "give --public-key KEY_ID=PATH (repeatable) or --no-auth"
    if bool(args.rest_429_burst) != bool(args.rest_429_every):
        return "--rest-429-burst and --rest-429-every go together"
    if bool(args.stall_every) != bool(args.stall_for):
        return "--stall-every and --stall-for go together"
    return None


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    prog = "kalshibook sim"
    problem = _check(args)
    if problem is not None:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return 2
    try:
        config = _config(args)
        return asyncio.run(_serve(config))
    except KalshibookError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(
            f"{prog}: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 0


async def _serve(config: SimConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with SimServer(config) as sim:
        print(
            f"kalshibook sim: listening on {sim.host}:{sim.port} "
            f"rest={sim.rest_url} ws={sim.ws_url} "
            f"markets={sim.model.live_count} rate={config.rate:g}/s seed={config.seed}",
            flush=True,
        )
        await stop.wait()
    return 0


class _OneLineErrors(argparse.ArgumentParser):
    """Bad flags print one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m kalshibook.sim``."""
    parser = _OneLineErrors(prog="kalshibook sim", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("INFO")
    return run(args)
