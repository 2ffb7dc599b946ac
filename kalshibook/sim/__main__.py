"""``python -m kalshibook.sim`` = ``kalshibook sim``."""

from kalshibook.sim.cli import main

raise SystemExit(main())
