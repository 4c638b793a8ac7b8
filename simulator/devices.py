"""Where a run executes: the backend, how many of its devices, and (several hosts) which share of the
path blocks this process simulates. Results never depend on any of these choices."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import numpy as np

from .errors import CapsimError

if TYPE_CHECKING:
    import jax

# JAX is imported by the commands that simulate or fit, not by `import simulator` (so that `capsim --help`,
# `validate` and `schema` start fast): settings chosen before it is imported are applied right after its import
# (an import hook), before its backends start; no environment variable is changed, so child processes choose
# their own.
_PENDING: dict[str, object] = {}


class _ConfigureJaxOnImport:
    """A ``sys.meta_path`` finder that lets ``import jax`` run as usual, then applies ``_PENDING``."""

    def find_spec(self, name, path=None, target=None):
        if name != "jax":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("jax")
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _apply_pending(module)

        spec.loader.exec_module = exec_module
        return spec


def _apply_pending(jax) -> None:
    for key, value in _PENDING.items():
        if key == "jax_num_cpu_devices" and jax.config.jax_num_cpu_devices >= 0:
            continue  # chosen already (JAX_NUM_CPU_DEVICES)
        jax.config.update(key, value)
    _PENDING.clear()


def _configure_jax(settings: dict) -> None:
    """Apply JAX settings now if JAX is imported, else right after its import."""
    if "jax" in sys.modules:
        _PENDING.update(settings)
        _apply_pending(sys.modules["jax"])
        return
    _PENDING.update(settings)
    if not any(isinstance(f, _ConfigureJaxOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigureJaxOnImport())


class DeviceError(CapsimError):
    """A device, device count or process setting that cannot be honoured here."""


def cpu_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_cpu_cores() -> int | None:
    """Give JAX's CPU backend one device per core (``jax_num_cpu_devices``), so that a CPU run simulates one
    block per core side by side. One XLA CPU device spreads a block's small per-step operations over the cores,
    and the threads mostly wait on each other; one device per core is about twice as fast (benchmarks/README.md
    has the figures). The numbers are the same either way.

    Only possible before JAX starts its backends (``import simulator`` does it first), and left alone when the
    count is already chosen (``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or ``jax_num_cpu_devices``).
    Returns the count set, or None."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    n = cpu_cores()
    if "jax" not in sys.modules:  # applied when JAX is imported, unless chosen by then
        if "JAX_NUM_CPU_DEVICES" in os.environ:
            return None
        _configure_jax({"jax_num_cpu_devices": n})
        return n
    import jax

    if jax.config.jax_num_cpu_devices >= 0:
        return None
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the backends are already running: keep their devices
        return None
    return n


def use_compile_cache(path: str | None = None) -> str | None:
    """Keep compiled kernels on disk (JAX's persistent compilation cache), so that the next run of the same
    scenario shape skips XLA's compile, most of a short `capsim run`'s fixed cost. The numbers are the same
    either way. ``path``: else CAPSIM_CACHE_DIR (set but empty: no cache), else
    $XDG_CACHE_HOME/capsim/xla (~/.cache/capsim/xla). Returns the folder, or None when off or not creatable."""
    if path is None:
        path = os.environ.get("CAPSIM_CACHE_DIR")
    if path is None:
        path = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "capsim", "xla")
    if not path:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    _configure_jax({"jax_compilation_cache_dir": path, "jax_persistent_cache_min_compile_time_secs": 0.2})
    return path


def resolve_device(device: str = "cpu") -> jax.Device:
    """'cpu', 'gpu' or 'auto' (a GPU when JAX sees one, else the CPU)."""
    import jax

    if device not in ("cpu", "gpu", "auto"):
        raise DeviceError(f"device must be 'cpu', 'gpu' or 'auto', got {device!r}")
    if device in ("gpu", "auto"):
        try:
            return jax.local_devices(backend="gpu")[0]
        except RuntimeError:
            if device == "gpu":
                raise DeviceError(
                    "a GPU was requested but JAX sees none on this machine (backends: "
                    f"{', '.join(sorted({d.platform for d in jax.devices()}))}). Install a CUDA build of jax "
                    "(pip install 'jax[cuda12]') on a machine with an NVIDIA GPU",
                    ("or pass device='cpu'", "or use --device cpu"),
                ) from None
    return jax.local_devices(backend="cpu")[0]


def resolve_devices(device: str = "cpu", count: int | str = "all") -> tuple[jax.Device, ...]:
    """The first ``count`` (a number or 'all') local devices of the backend that ``device`` names.
    On CPU these are one per core (``use_cpu_cores``), or N with XLA_FLAGS=--xla_force_host_platform_device_count=N
    set before JAX starts."""
    import jax

    first = resolve_device(device)
    local = jax.local_devices(backend=first.platform)
    if count == "all":
        return tuple(local)
    try:
        n = int(count)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= len(local):
        raise DeviceError(
            f"the device count must be a number in 1..{len(local)} or 'all' on this {first.platform} "
            f"backend ({len(local)} device(s) visible), got {count!r}",
            (f"pass devices='all' or devices=1..{len(local)}", f"use --devices all or 1..{len(local)}"),
        )
    return tuple(local[:n])


def init_processes(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join a multi-process run with ``jax.distributed`` (arguments, else JAX's usual environment variables
    such as JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else cluster auto-detection).
    Must run before any other JAX call. CPU processes exchange statistics through gloo collectives."""
    import jax

    given = [coordinator, num_processes, process_id]
    if any(v is not None for v in given) and not all(v is not None for v in given):
        raise DeviceError(
            "a multi-process run needs its coordinator, process count and process id together",
            (
                "give all three of coordinator, num_processes and process_id, or none (and set "
                "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID instead)",
                "give all three of --coordinator, --num-processes and --process-id, or none (and set "
                "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID instead)",
            ),
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"could not join the multi-process run: {exc}") from None


def wants_processes() -> bool:
    """True when the environment describes a multi-process run (JAX's usual variables)."""
    return "JAX_COORDINATOR_ADDRESS" in os.environ and int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1


def process_blocks(n_blocks: int) -> list[int]:
    """This process's contiguous share of the block indices 0..n_blocks-1."""
    import jax

    return [int(b) for b in np.array_split(np.arange(n_blocks), jax.process_count())[jax.process_index()]]


def sum_over_processes(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Element-wise sums across processes. Each entry is filled by one process and zero elsewhere, so the
    sum reproduces it exactly; one process returns its arrays unchanged."""
    import jax

    if jax.process_count() == 1:
        return arrays
    from jax.experimental import multihost_utils

    # Gather raw bytes: JAX would round float64 to float32 when 64-bit mode is off.
    raw = {k: np.ascontiguousarray(v).view(np.uint8).reshape(-1) for k, v in arrays.items()}
    gathered = multihost_utils.process_allgather(raw)
    out = {}
    for k, v in arrays.items():
        parts = np.asarray(gathered[k]).reshape(jax.process_count(), -1).view(v.dtype)
        out[k] = parts.reshape((jax.process_count(),) + v.shape).sum(axis=0, dtype=v.dtype)
    return out


def from_process_zero(values: np.ndarray) -> np.ndarray:
    """Process 0's ``values`` on every process (so that all take the decisions it took); one process returns
    them unchanged."""
    import jax

    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(values))
