"""Bulk exports: per-table, per-market, per-UTC-day Parquet and gzip CSV files plus a manifest."""
