"""capsim: Monte Carlo of small- vs large-cap returns under regime-switching macro scenarios."""

__version__ = "0.1.0"

from .devices import DeviceError, use_cpu_cores  # noqa: E402
from .errors import CapsimError  # noqa: E402

use_cpu_cores()  # one CPU device per core, while JAX has not started (see devices.use_cpu_cores)
from . import backtest, calibrate  # noqa: E402  (modules: sim.calibrate.calibrate(...), sim.backtest.backtest(...))
from .batch import BatchError, BatchInterrupted, batch  # noqa: E402  (sim.batch: the function)
from .blend import BlendError, BlendResult, blend  # noqa: E402  (sim.blend, sim.compare: the functions)
from .calibrate import Calibration, FitError  # noqa: E402
from .compare import CompareError, Comparison, compare  # noqa: E402
from .history import DataError, load_us_size_returns, read_returns  # noqa: E402
from .output import OutputError, OutputExistsError  # noqa: E402
from .run import MethodError, NonFiniteError, Result, ResultError, SavedResult, load_result, simulate  # noqa: E402
from .scenario import Scenario, ScenarioError, load_scenario, parse_scenario  # noqa: E402
from .sweep import SweepError, sweep  # noqa: E402  (sim.sweep: the function)
from .uncertainty import with_parameter_draws  # noqa: E402

__all__ = [
    "BatchError",
    "BatchInterrupted",
    "BlendError",
    "BlendResult",
    "CapsimError",
    "CompareError",
    "Comparison",
    "blend",
    "compare",
    "Calibration",
    "DataError",
    "DeviceError",
    "FitError",
    "MethodError",
    "NonFiniteError",
    "OutputError",
    "OutputExistsError",
    "Result",
    "ResultError",
    "SavedResult",
    "Scenario",
    "ScenarioError",
    "SweepError",
    "__version__",
    "backtest",
    "batch",
    "calibrate",
    "load_result",
    "load_scenario",
    "load_us_size_returns",
    "parse_scenario",
    "read_returns",
    "simulate",
    "sweep",
    "use_cpu_cores",
    "with_parameter_draws",
]
