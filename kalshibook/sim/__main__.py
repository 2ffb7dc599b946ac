"""``python -m kalshibook.sim`` = ``kalshibook sim``."""

from kalshibook.cli.sim import main

raise SystemExit(main())
