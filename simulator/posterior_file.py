"""The posterior file's reader: the draws a scenario's ``uncertainty: {posterior: FILE, sha256: ...}`` runs with.

The model side reads the file (``load_posterior``); the fitting side (``simulator.fit.posterior``) samples the
posterior and writes it. arviz and xarray are imported only when a file is read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import CapsimError


class PosteriorFileError(CapsimError):
    """A posterior file that cannot be used: missing, unreadable, or not the file the scenario names
    (SHA-256 mismatch)."""


def group(idata, name: str):
    """One group of an InferenceData or DataTree as an ``xarray.Dataset``."""
    import xarray as xr

    g = idata[name]
    return g if isinstance(g, xr.Dataset) else g.to_dataset()


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class PosteriorDraws(NamedTuple):
    """Per-draw parameters (chains concatenated, chain-major), ready for the per-block engine; units as in a
    scenario file: annualised drift and vol of the log return, per-step transition matrix at ``frequency``."""

    drift: np.ndarray  # [D, K, A]
    vol: np.ndarray  # [D, K, A]
    corr: np.ndarray  # [D, K, A, A]
    transition: np.ndarray  # [D, K, K]
    start: np.ndarray  # [D, K]
    regimes: tuple[str, ...]
    assets: tuple[str, ...]
    frequency: str
    attrs: dict
    coef: np.ndarray | None = None  # [D, K, K, 1 + n] logits of leaving (``calibrate --posterior --drivers``)
    drivers: tuple[str, ...] = ()  # the n drivers of ``coef``, in order

    @property
    def n_draws(self) -> int:
        return len(self.drift)


def load_posterior(path: str | Path, sha256: str | None) -> PosteriorDraws:
    """Read a posterior file written by ``write_posterior`` (``capsim calibrate --posterior``) after checking
    its SHA-256 against ``sha256`` (None: not checked). Raises ``PosteriorFileError`` naming the file when it
    is missing, changed or unreadable."""
    import arviz as az

    path = Path(path)
    try:
        digest = sha256_of(path)
    except OSError as exc:
        raise PosteriorFileError(f"{path}: cannot read the posterior file: {exc.strerror or exc}") from None
    if sha256 is not None and digest != sha256.lower():
        raise PosteriorFileError(
            f"{path}: SHA-256 {digest} does not match {sha256} recorded with the scenario: the posterior file "
            "changed since it was calibrated",
            (
                "re-run simulator.fit.posterior calibration to write both files again",
                "re-run `capsim calibrate --posterior` to write both files again",
            ),
        )
    try:
        post = group(az.from_netcdf(path), "posterior").load()
    except Exception as exc:  # any reader failure is a bad file, said with its name
        raise PosteriorFileError(f"{path}: not a capsim posterior file: {exc}") from None

    def flat(name):
        x = post[name].to_numpy()
        return x.reshape(-1, *x.shape[2:])

    missing = [v for v in ("drift", "vol", "corr", "transition", "start", "regime", "asset") if v not in post.variables]
    if missing:
        raise PosteriorFileError(f"{path}: not a capsim posterior file: it lacks the variable(s) {', '.join(missing)}")
    return PosteriorDraws(
        drift=flat("drift"),
        vol=flat("vol"),
        corr=flat("corr"),
        transition=flat("transition"),
        start=flat("start"),
        regimes=tuple(map(str, post["regime"].to_numpy())),
        assets=tuple(map(str, post["asset"].to_numpy())),
        frequency=str(post.attrs.get("frequency", "monthly")),
        attrs=dict(post.attrs),
        coef=flat("coef") if "coef" in post.variables else None,
        drivers=tuple(map(str, post["term"].to_numpy()[1:])) if "coef" in post.variables else (),
    )
