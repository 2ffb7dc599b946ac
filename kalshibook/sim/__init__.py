"""A local exchange speaking Kalshi's 2026 market-data protocol (REST + WebSocket on one port).

``async with SimServer(SimConfig(...)) as sim`` runs it in-process; ``kalshibook sim`` from the
command line. The market model (:mod:`.model`) is pure and seeded; :mod:`.truth` reads the ground
truth a run writes.
"""

from kalshibook.sim.model import Exchange
from kalshibook.sim.records import ModelConfig
from kalshibook.sim.server import SimConfig, SimServer
from kalshibook.sim.truth import Truth, load_truth

__all__ = ("Exchange", "ModelConfig", "SimConfig", "SimServer", "Truth", "load_truth")
