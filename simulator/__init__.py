"""capsim: Monte Carlo of small- vs large-cap returns under regime-switching macro scenarios."""

__version__ = "0.1.0"

from .engine import DeviceError  # noqa: E402
from .run import OutputExistsError, Result, simulate  # noqa: E402
from .scenario import Scenario, ScenarioError, load_scenario, parse_scenario  # noqa: E402

__all__ = ["DeviceError", "OutputExistsError", "Result", "Scenario", "ScenarioError", "__version__",
           "load_scenario", "parse_scenario", "simulate"]
