"""``kalshibook export``'s name flags: repeatable or comma-separated, empty names refused, the
same rules as ``kalshibook backfill``'s (``cli.common.split_names``)."""

from __future__ import annotations

import argparse

import pytest

from kalshibook.cli.export import DEFAULT_TABLES, add_arguments, request_from
from kalshibook.errors import ConfigError
from kalshibook.export.run import ALL_TABLES


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--out", "x", "--start", "2026-01-01", "--end", "2026-01-02", *argv])


def test_name_flags_repeat_and_split() -> None:
    argv = ["--market", "A, B", "--market", "C,A", "--event", "E1", "--event", "E2,E1"]
    argv += ["--series", "S1", "--series", "S2", "--tables", "trades", "--tables", "quotes,trades"]
    req = request_from(parse(*argv))
    assert req.tickers == ("A", "B", "C")
    assert req.events == ("E1", "E2")
    assert req.series == ("S1", "S2")
    assert req.tables == ("trades", "quotes")


def test_defaults() -> None:
    req = request_from(parse())
    assert req.tables == DEFAULT_TABLES
    assert "candles_1m" not in req.tables
    assert (req.tickers, req.events, req.series) == ((), (), ())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tables", "trades,,quotes"], "--tables 'trades,,quotes': empty name"),
        (["--tables", "trades", "--tables", ""], "--tables '': empty name"),
        (["--market", "A", "--market", " "], "--market ' ': empty name"),
        (["--event", "E,"], "--event 'E,': empty name"),
        (["--series", ",S"], "--series ',S': empty name"),
    ],
)
def test_empty_names_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        request_from(parse(*argv))
    said = err.value.args[0]
    assert said.startswith(message)
    if argv[0] == "--tables":  # the tables one may name, as an unknown table's error says
        assert said == f"{message}; tables: {', '.join(ALL_TABLES)}"


def test_unknown_table_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        request_from(parse("--tables", "trades,nope"))
    assert "unknown table(s) nope" in err.value.args[0]
