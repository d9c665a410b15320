"""The WinCC ``rest`` simulator: the API of SPEC.md over a simulated plant, with faults."""

from gateway.simulator.faults import Faults
from gateway.simulator.plant import Plant
from gateway.simulator.server import Simulator, SimulatorOptions

__all__ = ["Faults", "Plant", "Simulator", "SimulatorOptions"]
