"""Writer progress: commit marks that make batch retries and spool replays idempotent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

``private.writer_progress`` has one row per (writer instance, table): how far that writer's batches
of that table are committed, as ``(batch_seq, rows_done)``. The collector's writer reads the mark
under a row lock and moves it in the same transaction as the rows it covers, and only forwards, so a batch whose commit was
acknowledged too late (connection lost after COMMIT) or whose spool file outlived its commit (crash
before the file was deleted) is recognised when it comes again and skipped instead of being
written twice. Without it, such a replay duplicated order-book deltas, and a book rebuilt from
them applied those deltas twice.

A writer instance (``writer_id``) is one collector process; batches of one table are written in
``batch_seq`` order, one at a time, so one mark per table is enough. ``updated_at`` lets old rows
be pruned (a starting writer deletes marks untouched for ``PROGRESS_RETENTION_DAYS``).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE private.writer_progress (
    writer_id   uuid        NOT NULL,
    table_name  text        NOT NULL,
    batch_seq   bigint      NOT NULL,
    rows_done   integer     NOT NULL CHECK (rows_done >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (writer_id, table_name)
);
COMMENT ON TABLE private.writer_progress IS
    'collector writer commit marks: (batch_seq, rows_done) committed per writer and table';
"""

DOWNGRADE = "DROP TABLE IF EXISTS private.writer_progress"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
