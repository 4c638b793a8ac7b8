"""capsim: Monte Carlo of small- vs large-cap returns under regime-switching macro scenarios."""

__version__ = "0.1.0"

import importlib  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

from .devices import DeviceError, use_cpu_cores  # noqa: E402, F401
from .errors import CapsimError  # noqa: E402, F401

use_cpu_cores()  # one CPU device per core, set before JAX starts (see devices.use_cpu_cores)

# The public names, imported on first use (so that `import simulator` and the commands that neither simulate
# nor fit do not import JAX, pandas or the fitting side): name -> (module, attribute; None for the module).
_LAZY = {
    "backtest": (".fit.backtest", None),  # sim.backtest.backtest(...)
    "history": (".fit.history", None),  # the fitting side's modules, by their short names too
    "data_sources": (".fit.data_sources", None),
    "posterior": (".fit.posterior", None),
    "calibrate": (".fit.calibrate", None),  # sim.calibrate.calibrate(...)
    "batch": (".batch", "batch"),  # the function, as for blend, compare and sweep
    "BatchError": (".batch", "BatchError"),
    "BatchInterrupted": (".batch", "BatchInterrupted"),
    "blend": (".blend", "blend"),
    "BlendError": (".blend", "BlendError"),
    "BlendResult": (".blend", "BlendResult"),
    "Calibration": (".fit.calibrate", "Calibration"),
    "FitError": (".fit.calibrate", "FitError"),
    "compare": (".compare", "compare"),
    "CompareError": (".compare", "CompareError"),
    "Comparison": (".compare", "Comparison"),
    "DataError": (".fit.history", "DataError"),
    "load_us_size_returns": (".fit.history", "load_us_size_returns"),
    "read_returns": (".fit.history", "read_returns"),
    "OutputError": (".output", "OutputError"),
    "OutputExistsError": (".output", "OutputExistsError"),
    "NonFiniteError": (".run", "NonFiniteError"),
    "MethodError": (".run", "MethodError"),
    "Result": (".run", "Result"),
    "ResultError": (".run", "ResultError"),
    "SavedResult": (".run", "SavedResult"),
    "load_result": (".run", "load_result"),
    "simulate": (".run", "simulate"),
    "Scenario": (".scenario", "Scenario"),
    "ScenarioError": (".scenario", "ScenarioError"),
    "load_scenario": (".scenario", "load_scenario"),
    "parse_scenario": (".scenario", "parse_scenario"),
    "sensitivity": (".sensitivity", "sensitivity"),  # the function, as for sweep
    "SensitivityError": (".sensitivity", "SensitivityError"),
    "solve": (".solve", "solve"),
    "SolveError": (".solve", "SolveError"),
    "sweep": (".sweep", "sweep"),
    "SweepError": (".sweep", "SweepError"),
    "with_parameter_draws": (".uncertainty", "with_parameter_draws"),
}
_FUNCTIONS = {name for name, (module, attr) in _LAZY.items() if attr == module[1:]}  # batch, blend, ...


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = importlib.import_module(module, __name__)
        value = value if attr is None else getattr(value, attr)
    else:
        try:  # a submodule: sim.history, sim.posterior, ...
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    object.__setattr__(sys.modules[__name__], name, value)
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps ``sim.batch``, ``sim.blend``, ``sim.compare`` and ``sim.sweep`` the functions when their modules
    are imported (an import binds the submodule as the package's attribute)."""

    def __setattr__(self, name, value):
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            self.__dict__.pop(name, None)  # resolved to the function by __getattr__ on next use
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = sorted(["CapsimError", "DeviceError", "__version__", "use_cpu_cores", *_LAZY])
