"""Result folders written atomically: files go to a temporary folder beside the target, which is renamed
into place only when complete; a non-empty target is refused unless forced."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import CapsimError

MIN_FREE_BYTES = 1 << 20  # an output's file system must have at least this much free before any work
LOCK_FILE = ".capsim.lock"  # in a folder a process writes: its advisory lock (``folder_lock``)


class OutputExistsError(CapsimError):
    """The output folder exists and is not empty, and overwriting was not asked for."""


class OutputError(CapsimError):
    """An output that cannot be written: a file in the way, a read-only or full file system, the current folder,
    or another capsim writing it."""


def check_writable(out: str | os.PathLike) -> None:
    """Refuse, before any work, an output path (file or folder) that cannot be written: one under a file, on a
    read-only file system or one without write permission, on a full disk, or the current folder (or one
    holding it), which cannot be replaced."""
    out = Path(out)
    here = Path.cwd().resolve()
    if out.exists() and (out.resolve() == here or out.resolve() in here.parents):
        raise OutputError(
            f"{out}: is the current folder (or holds it), which cannot be replaced",
            ("choose a folder of its own", "choose a folder of its own for --out"),
        )
    probe = out.parent if out.exists() else out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{out}: {probe} is a file, not a folder", ("choose another path", "choose another --out"))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"{out}: cannot write in {probe} (no permission, or a read-only file system)",
            ("choose another path", "choose another --out"),
        )
    if shutil.disk_usage(probe).free < MIN_FREE_BYTES:
        raise OutputError(f"{out}: no space left on the file system of {probe}")


@contextlib.contextmanager
def os_errors(out: Path):
    """Turn an operating-system error while writing ``out`` (a full disk, a read-only file system, a folder in
    use) into an ``OutputError`` naming it."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(f"{out}: cannot write: {exc.strerror or exc}{where}") from None


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold an advisory lock (``flock``) on ``folder``, created if missing, while the block runs: a second
    writer gets ``OutputError`` naming the holder's PID at once. Released, and its file removed, on any exit
    (a killed process's lock goes with it). Where ``fcntl`` is missing (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = folder / LOCK_FILE
    with os_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        while True:  # until the file locked is the one at ``path`` (a holder may remove it as it releases)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "a process"
                os.close(fd)
                raise OutputError(
                    f"{folder}: {holder} is writing this folder (lock {path})",
                    (
                        "wait for it to finish, or choose another folder",
                        "wait for it to finish, or choose another --out",
                    ),
                ) from None
            if path.exists() and os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"capsim PID {os.getpid()} on {socket.gethostname()}".encode())
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def temporary_prefix(path: Path, kind: str = "tmp") -> str:
    """The prefix of a temporary file or folder beside ``path``: hidden, naming ``path``, this process and host
    (``remove_stale`` removes those whose process is gone)."""
    return f".{path.name}.{kind}-{os.getpid()}@{socket.gethostname()}-"


def remove_stale(path: Path) -> None:
    """Remove the temporary files and folders that a killed capsim process (of this host, no longer running)
    left beside ``path`` while writing it; those of live processes, or of other hosts, stay."""
    if not path.parent.is_dir():
        return
    for tmp in [*path.parent.glob(f".{path.name}.tmp-*"), *path.parent.glob(f".{path.name}.old-*")]:
        owner = tmp.name.split("-", 1)[1].rsplit("-", 1)[0] if "-" in tmp.name else ""
        pid, _, host = owner.partition("@")
        if pid.isdigit() and host == socket.gethostname() and not process_alive(int(pid)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def readable_by_all(tmp: Path) -> None:
    """Give a temporary file or folder the mode a plain ``open`` or ``mkdir`` would (mkstemp and mkdtemp make
    them private to the owner): results are for everyone the umask lets read them."""
    umask = os.umask(0o022)  # the umask can only be read by setting it
    os.umask(umask)
    os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~umask)


def sync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (``fsync``), so that a rename after it never exposes a name
    whose content a crash could still lose."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refuse_existing(out: str | os.PathLike, force: bool) -> None:
    """Raise ``OutputExistsError`` if ``out`` holds anything and ``force`` is off."""
    out = Path(out)
    check_writable(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise OutputExistsError(
            f"{out}: output folder exists and is not empty",
            (
                "pass force=True to replace it, or choose another folder",
                "use --force to replace it, or choose another --out",
            ),
        )


def write_folder(out: str | os.PathLike, write: Callable[[Path], None], force: bool = False) -> Path:
    """Call ``write(tmp)`` to fill a temporary folder, then move it to ``out`` (replacing it if ``force``).
    On any error the temporary folder is removed and ``out`` is left as it was. The files are on disk
    (``fsync``) before the rename, so ``out`` is complete even after a crash or a power cut."""
    out = Path(out)
    refuse_existing(out, force)
    with os_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(out), dir=out.parent))
        try:
            readable_by_all(tmp)
            write(tmp)
            for f in tmp.iterdir():
                sync(f)
            sync(tmp)
            if out.exists():
                _replace_folder(out, tmp)
            else:
                os.replace(tmp, out)
            sync(out.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already when it was renamed into place
    return out


def _replace_folder(out: Path, tmp: Path) -> None:
    """Put the folder ``tmp`` in the place of the existing ``out``, which is put back if that fails."""
    trash = Path(tempfile.mkdtemp(prefix=temporary_prefix(out, "old"), dir=out.parent))
    try:
        os.replace(out, trash / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(trash / out.name, out)
            raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def refuse_existing_file(path: str | os.PathLike, force: bool) -> None:
    """Raise ``OutputExistsError`` if ``path`` exists and ``force`` is off, or if it is a folder."""
    path = Path(path)
    check_writable(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: file exists", ("pass force=True to replace it", "use --force to replace it"))
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a folder; give a file name")


def write_text_atomic(path: str | Path, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    refuse_existing_file(path, force)
    with os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            readable_by_all(Path(tmp))
            os.replace(tmp, path)
            sync(path.parent)
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already when it was renamed into place
    return path


def read_csv_exact(path: str | os.PathLike):
    """A CSV that capsim wrote, as a DataFrame whose floats are exactly the values written (each written as its
    shortest repr). pandas 3.1 parses decimals exactly by default; before it, the default parser has a fixed
    budget of digits (0.0024992154987865693 reads as 0.0024992154987865) and ``float_precision="round_trip"``
    (deprecated from 3.1) is exact."""
    import pandas as pd

    exact_default = tuple(int(v) for v in pd.__version__.split(".")[:2]) >= (3, 1)
    return pd.read_csv(path, **({} if exact_default else {"float_precision": "round_trip"}))
