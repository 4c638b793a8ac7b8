"""Result folders written atomically: files go to a temporary folder beside the target, which is renamed
into place only when complete; a non-empty target is refused unless forced."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import CapsimError


class OutputExistsError(CapsimError):
    """The output folder exists and is not empty, and overwriting was not asked for."""


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        readable_by_all(tmp)
        write(tmp)
        for f in tmp.iterdir():
            sync(f)
        sync(tmp)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
        sync(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def refuse_existing_file(path: str | os.PathLike, force: bool) -> None:
    """Raise ``OutputExistsError`` if ``path`` exists and ``force`` is off, or if it is a folder."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: file exists", ("pass force=True to replace it", "use --force to replace it"))
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a folder; give a file name")


def write_text_atomic(path: str | Path, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    refuse_existing_file(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        readable_by_all(Path(tmp))
        os.replace(tmp, path)
        sync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_csv_exact(path: str | os.PathLike):
    """A CSV that capsim wrote, as a DataFrame whose floats are exactly the values written (each written as its
    shortest repr). pandas 3.1 parses decimals exactly by default; before it, the default parser has a fixed
    budget of digits (0.0024992154987865693 reads as 0.0024992154987865) and ``float_precision="round_trip"``
    (deprecated from 3.1) is exact."""
    import pandas as pd

    exact_default = tuple(int(v) for v in pd.__version__.split(".")[:2]) >= (3, 1)
    return pd.read_csv(path, **({} if exact_default else {"float_precision": "round_trip"}))
