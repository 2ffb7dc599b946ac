"""A replica's lag from the primary's WAL positions over time (kalshibook.storage.replicas)."""

from __future__ import annotations

import time

from kalshibook.storage.replicas import (
    ReplicaState,
    WalSamples,
    apply_position,
    lag_seconds,
    lsn_int,
)


def test_lsn_text_to_integer() -> None:
    assert lsn_int("0/0") == 0
    assert lsn_int("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn_int("1/0") > lsn_int("0/FFFFFFFF")


def test_lag_is_the_age_of_the_oldest_wal_the_replica_lacks() -> None:
    wal = WalSamples(size=3)
    assert wal.missing_for(100, now=10.0) is None  # no history yet
    for at, lsn in ((1.0, 100), (2.0, 100), (3.0, 150), (4.0, 200)):
        wal.add(at, lsn)  # size 3: the sample at 1.0 is gone
    assert wal.missing_for(200, now=5.0) is None  # caught up with every sample
    assert wal.missing_for(160, now=5.0) == 1.0  # the primary passed 160 at 4.0
    assert wal.missing_for(120, now=5.0) == 2.0  # ... and 120 at 3.0
    # before every kept sample: since when is not known (at least 3 s: only a lower bound,
    # which would make a replica behind for hours look fine just after the API started)
    assert wal.missing_for(50, now=5.0) is None
    first = WalSamples(size=8)
    first.add(1.0, lsn_int("5/0"))  # the API's first check
    assert first.missing_for(lsn_int("1/0"), now=1.001) is None


def test_a_replica_far_behind_at_start_is_lagging() -> None:
    """Just after start there is one WAL sample: a replica 16 GiB and an hour behind is judged
    by its replay age, not by the age of that sample."""
    wal = WalSamples(size=8)
    wal.add(time.monotonic(), lsn_int("5/0"))
    state = ReplicaState("r")
    row = (True, "1/0", 3600.0, float(4 << 32), "7715")
    apply_position(state, row, max_lag=10.0, primary_system="7715", wal=wal)
    assert state.lag_seconds == 3600.0
    assert not state.healthy


def test_a_long_uncommitted_load_is_not_lag() -> None:
    """WAL flows and is replayed while no transaction commits: the replay age grows, the lag
    (what the replica lacks, and since when) stays small."""
    assert lag_seconds(behind_bytes=8192, replay_age=40.0, missing_for=0.3) == 0.3
    assert lag_seconds(behind_bytes=8192, replay_age=40.0) == 40.0  # no history: the age
    assert lag_seconds(behind_bytes=0, replay_age=40.0, missing_for=5.0) == 0.0
    assert lag_seconds(behind_bytes=None, replay_age=None) is None


def test_a_standby_of_another_cluster_is_not_used() -> None:
    """In recovery and caught up, but replaying another primary's WAL (its system identifier
    differs): its data is not ours. Unverified while the primary's identifier is unknown."""
    row = (True, "0/3000060", 0.1, 0.0, "7715108819057607186")
    ours = ReplicaState("r")
    apply_position(ours, row, max_lag=10.0, primary_system="7715108819057607186")
    assert ours.healthy
    assert ours.error is None
    other = ReplicaState("r")
    apply_position(other, row, max_lag=10.0, primary_system="7715109027731040779")
    assert not other.healthy
    assert other.error is not None
    assert "another cluster" in other.error
    assert other.lag_seconds is None  # LSNs of two clusters are not comparable
    unknown = ReplicaState("r")
    apply_position(unknown, row, max_lag=10.0, primary_system=None)
    assert not unknown.healthy
    assert unknown.error is not None
    assert unknown.error.startswith("not verified")
