"""The WinCC simulator: the API of one dialect (rest, classic, unified) over a simulated
plant, with faults."""

from gateway.simulator.faults import Faults
from gateway.simulator.plant import Plant
from gateway.simulator.server import Simulator, SimulatorOptions

__all__ = ["Faults", "Plant", "Simulator", "SimulatorOptions"]
