"""``kalshibook backfill``: history from Kalshi's REST (hierarchy, settlements, trades, Kalshi's
candlesticks), resumable per market. :mod:`.plan` is the pure routing, :mod:`.loader` the I/O."""
