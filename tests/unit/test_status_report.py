"""The pure half of `kalshibook status`: verdicts and rendering, with literals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kalshibook.ops import status
from kalshibook.ops.status import CollectorState
from kalshibook.storage import status_reads
from kalshibook.storage.status_reads import (
    Channel,
    DatabaseState,
    DbSnapshot,
    Gaps,
    PolicyJob,
    Relation,
)

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def snapshot(ages: dict[str, float | None], edition: str = "apache") -> DbSnapshot:
    channels = [
        Channel(
            channel=name,
            last_received_at=None
            if ages.get(name) is None
            else NOW - timedelta(seconds=ages[name]),  # type: ignore[arg-type]
            last_ts=None,
        )
        for name in status_reads.CHANNELS
    ]
    return DbSnapshot(
        database=DatabaseState(
            url="postgresql://u:***@db/kb",
            reachable=True,
            database="kb",
            server_version="16.4",
            timescaledb_version="2.19.3",
            edition=edition,
            schema_revision="0002",
        ),
        now=NOW,
        channels=channels,
        gaps=Gaps(
            window_hours=24, since=NOW - timedelta(hours=24), count=0, markets=0, by_reason=[]
        ),
        hypertables=[],
        candles=[],
    )


UP = CollectorState(url="http://127.0.0.1:9108/health", state="ok", http_status=200, body={})
DOWN = CollectorState(url="http://127.0.0.1:9108/health", state="unreachable", error="refused")


def test_fresh_when_the_freshest_channel_is_fresh() -> None:
    report = status.assess(
        snapshot({"trades": 500, "quotes": 5, "lifecycle_events": 9000}), DOWN, stale_after=120
    )
    assert report.exit_code == status.EXIT_OK
    assert report.healthy
    states = {c.channel: c.state for c in report.channels}
    assert states == {
        "trades": "old",
        "orderbook_deltas": "empty",
        "orderbook_snapshots": "empty",
        "quotes": "fresh",
        "market_stats": "empty",
        "lifecycle_events": "old",
    }


def test_stale_and_empty() -> None:
    report = status.assess(snapshot({"trades": 121}), UP, stale_after=120)
    assert report.exit_code == status.EXIT_STALE
    assert report.problems == [
        "stale: the newest data (trades) was received 2 min 1 s ago, more than --stale-after 120 s"
    ]
    report = status.assess(snapshot({}), UP, stale_after=120)
    assert report.exit_code == status.EXIT_STALE
    assert report.problems[0].startswith("no data yet")


def test_required_channels_and_collector() -> None:
    snap = snapshot({"trades": 1, "quotes": 300})
    report = status.assess(
        snap, DOWN, stale_after=120, required_channels=("quotes", "market_stats")
    )
    assert report.exit_code == status.EXIT_STALE
    assert report.problems == [
        "channel quotes: last received 5 min 0 s ago, more than --stale-after 120 s",
        "channel market_stats: no data yet",
    ]
    assert status.assess(snap, DOWN, stale_after=120).exit_code == status.EXIT_OK
    report = status.assess(snap, DOWN, stale_after=120, require_collector=True)
    assert report.exit_code == status.EXIT_COLLECTOR
    assert report.problems == ["collector unreachable: refused"]
    assert status.assess(snap, UP, stale_after=120, require_collector=True).exit_code == 0


def test_render_community_edition() -> None:
    snap = snapshot({"trades": 2}, edition="timescale")
    snap.hypertables = [
        Relation(
            name="trades",
            kind="hypertable",
            rows=123_456_789,
            rows_exact=False,
            total_bytes=5 * 1024**3,
            compression="9.8x (40/42 chunks)",
            compression_ratio=9.8,
        )
    ]
    snap.candles = [
        Relation(
            name="candles_trades_1m",
            kind="continuous aggregate",
            rows=1000,
            rows_exact=True,
            total_bytes=2048,
            last_refresh=NOW - timedelta(seconds=30),
            compression="3.0x (2/4 chunks)",
            note=status_reads.CAGG_NOTE,
        )
    ]
    snap.gaps = Gaps(
        window_hours=24,
        since=NOW - timedelta(hours=24),
        count=3,
        markets=2,
        by_reason=[
            status_reads.GapReason(reason="disconnect", gaps=2, markets=2),
            status_reads.GapReason(reason="seq_gap", gaps=1, markets=1),
        ],
    )
    text = status.render_text(status.assess(snap, UP, stale_after=120))
    assert "TimescaleDB 2.19.3 community edition, schema revision 0002" in text
    assert "~123,456,789" in text
    assert "5.0 GB" in text
    assert "9.8x (40/42 chunks)" in text
    assert "3.0x (2/4 chunks); last refresh 2026-11-26 14:59:30 UTC\n" in text
    assert f"  continuous aggregates: {status_reads.CAGG_NOTE}\n" in text
    assert (
        "gaps (last 24 h): 3 gaps in 2 markets - disconnect 2 (2 markets), seq_gap 1 (1 market)"
        in text
    )
    assert text.endswith("verdict: OK (exit 0)\n")
    doc = json.loads(status.encode_json(status.assess(snap, UP, stale_after=120)))
    assert doc["hypertables"][0]["compression_ratio"] == 9.8
    assert doc["candles"][0]["last_refresh"] == "2026-11-26T14:59:30Z"


def job(job_id: int, policy: str, relation: str, **kw: object) -> PolicyJob:
    fields: dict[str, object] = {
        "schedule_seconds": 60.0,
        "enabled": True,
        "last_run_started_at": NOW - timedelta(seconds=20),
        "last_status": "Success",
        "runs": 10,
    }
    return PolicyJob(job_id=job_id, policy=policy, relation=relation, **(fields | kw))  # type: ignore[arg-type]


def test_policies_failed_paused_and_scheduler_off() -> None:
    snap = snapshot({"trades": 2}, edition="timescale")
    snap.database.job_scheduler = "running"
    snap.policies = [job(1000, "refresh", "candles_trades_1m")]
    ok = status.assess(snap, UP, stale_after=120)
    assert ok.exit_code == status.EXIT_OK
    text = status.render_text(ok)
    assert "policies (job scheduler running)" in text
    assert "candles_trades_1m  refresh  1 min" in text
    assert "10/0" in text

    snap.policies = [
        job(1000, "refresh", "candles_trades_1m"),
        job(1010, "compression", "trades", last_status="Failed", failures=3, last_error="boom"),
        job(1011, "retention", "quotes", enabled=False),
    ]
    bad = status.assess(snap, UP, stale_after=120)
    assert bad.exit_code == status.EXIT_POLICIES
    assert bad.problems == [
        "compression policy of trades (job 1010): last run failed: boom",
        "retention policy of quotes (job 1011) is paused",
    ]
    assert "paused" in status.render_text(bad)
    doc = json.loads(status.encode_json(bad))
    assert doc["policies"][1]["last_error"] == "boom"

    # staleness outranks a policy problem; a scheduler that is off is one
    stale = status.assess(snapshot({"trades": 999}, edition="timescale"), UP, stale_after=120)
    assert stale.exit_code == status.EXIT_STALE
    off = snapshot({"trades": 2}, edition="timescale")
    off.database.job_scheduler = "off (timescaledb.max_background_workers = 0): policies never run"
    assert status.assess(off, UP, stale_after=120).exit_code == status.EXIT_POLICIES
    # the Apache edition has no policies and no scheduler line
    apache = status.assess(snapshot({"trades": 2}), UP, stale_after=120)
    assert "policies" not in status.render_text(apache)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0 s"),
        (0.9, "0 s"),
        (59, "59 s"),
        (61, "1 min 1 s"),
        (7322, "2 h 2 min"),
        (90000, "1 d 1 h"),
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert status.format_age(seconds) == text


def test_format_bytes() -> None:
    assert status.format_bytes(None) == "-"
    assert status.format_bytes(512) == "512 B"
    assert status.format_bytes(1536) == "1.5 kB"
    assert status.format_bytes(3 * 1024**4) == "3.0 TB"


def test_collector_health_url() -> None:
    assert status.collector_health_url("127.0.0.1", 9108) == "http://127.0.0.1:9108/health"
    assert status.collector_health_url("0.0.0.0", 9108) == "http://127.0.0.1:9108/health"
    assert status.collector_health_url("::", 9108) == "http://[::1]:9108/health"
    assert status.collector_health_url("collector", 1) == "http://collector:1/health"
    assert status.collector_health_url("127.0.0.1", 0) is None
    assert status.probe_collector(None).state == "disabled"


def test_render_says_when_the_delta_extents_are_incomplete() -> None:
    complete = snapshot({"trades": 2})
    complete.database.delta_extents = "complete"
    assert "delta extents" not in status.render_text(status.assess(complete, UP, stale_after=60))
    incomplete = snapshot({"trades": 2})
    incomplete.database.delta_extents = "incomplete since 2026-11-26T14:00:00+00:00"
    text = status.render_text(status.assess(incomplete, UP, stale_after=60))
    assert "delta extents incomplete since 2026-11-26T14:00:00+00:00" in text
    assert "kalshibook rebuild-extents" in text
