"""What the command-line layer shares: weights and devices, input files checked before any work, station files
and waveforms read with one-line errors, and the help texts of the shared options.

``sine`` (:mod:`sine_seisbench.cli`), ``sine monitor``/``sine publish`` (:mod:`sine_seisbench.monitor.cli`) and
``sine plot`` (:mod:`sine_seisbench.plot`) import these from here, never from each other, so the command modules
form no import circle. Every function raises :class:`~sine_seisbench.errors.UserError` (one line naming the file or
option) for a mistake in the user's input.
"""

from __future__ import annotations

import glob
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import obspy
import pandas as pd
import torch

from .errors import MissingFileError, UserError, one_line
from .loader import (  # noqa: F401 - the weights helpers of the commands, re-exported
    PUBLISHED_WEIGHTS,
    UNTRAINED,
    WEIGHT_SUFFIXES,
    load_weights,
    resolve_weights,
    weight_names,
)
from .stations import read_stations

WEIGHTS_HELP = (
    "SINE weights: a shipped or published name, the path of NAME.json/NAME.pt (with or without the suffix), "
    "or 'untrained'"
)
DEVICE_HELP = (
    "torch device: auto (cuda when a GPU is available, else cpu), cpu, cuda, cuda:N or mps; `sine info` lists "
    "this machine's devices"
)
STATIONS_HELP = (
    "station file: StationXML (or another format ObsPy reads, or a folder/glob of StationXML files), or a "
    "CSV/TSV/whitespace table with network, station, latitude, longitude and optionally elevation (m, or "
    "elev_km), location, channel, in the usual spellings (lat, lon, elev, net, sta, ...)"
)
FDSN_HELP = (
    "instead of --inventory: get the stations of the waveforms (responses included) from this FDSN web "
    "service, e.g. https://service.iris.edu or IRIS (needs a network connection)"
)


# ----------------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------------
def resolve_device(spec: str | None, option: str = "--device") -> torch.device:
    """The torch device of ``--device``: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps``.

    :raises UserError: One line when the device is not one of these or is not available on this machine.
    """
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as e:
        raise UserError(
            f"{option} {spec}: not a device; give auto, cpu, cuda, cuda:N or mps"
        ) from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                f"this torch ({torch.__version__}) is built without CUDA"
                if torch.version.cuda is None
                else "no CUDA GPU is visible"
            )
            raise UserError(f"{option} {spec}: CUDA is not available ({why}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"{option} {spec}: there is no GPU {device.index} (this machine has {count}: "
                f"{', '.join(f'cuda:{i}' for i in range(count))})"
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError(
                f"{option} {spec}: Apple's MPS is not available on this machine; use --device cpu"
            )
    elif device.type != "cpu":
        raise UserError(f"{option} {spec}: unsupported device; give auto, cpu, cuda, cuda:N or mps")
    return device


def available_devices() -> list[str]:
    """The torch devices of this machine, e.g. ``["cpu", "cuda:0 (NVIDIA H200)"]``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


# ----------------------------------------------------------------------------------------------------
# Inputs and outputs, checked before any work starts
# ----------------------------------------------------------------------------------------------------
def check_input_file(path: str | os.PathLike, what: str, option: str) -> Path:
    """``path`` as a Path if it is a readable file.

    :param what: What the file is (for the messages), e.g. ``"inventory"``.
    :param option: The option or argument it was given to.
    :raises UserError: When it is missing, a folder or unreadable.
    """
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{what} {path} does not exist; check the path given to {option}")
    if p.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file to {option}")
    if not os.access(p, os.R_OK):
        raise UserError(f"{what} {path} cannot be read (permission denied); check its permissions")
    return p


def check_output_file(path: str | os.PathLike, option: str) -> None:
    """Checks that the file ``path`` can be written: its folder exists and is writable.

    :raises UserError: When the folder is missing or not writable, or ``path`` is a folder.
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    folder = p.parent
    if not folder.is_dir():
        raise UserError(
            f"the folder {folder} of {option} {path} does not exist; create it first (mkdir -p {folder})"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(
            f"the folder {folder} of {option} {path} is not writable; choose another folder"
        )


def check_output_folder(path: str | os.PathLike, option: str) -> None:
    """Checks that the folder ``path`` exists or can be created (the command creates it with its parents).

    :raises UserError: When ``path`` or an ancestor is a file, or the nearest existing ancestor is not writable.
    """
    p = Path(path).absolute()
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"{option} {path}: {existing} is a file, not a folder; choose another output folder"
        )
    if existing == p:
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserError(f"{option} {path} is not writable; choose another output folder")
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{option} {path} cannot be created: {existing} is not writable; choose another output folder"
        )


def waveform_files(patterns: list[str], option: str = "WAVEFORMS") -> list[str]:
    """The files named by ``patterns`` (paths or glob patterns), each checked to exist and be readable."""
    files: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise MissingFileError(
                    f"no waveform file matches {pattern}; check the pattern given to {option}"
                )
            files += matches
        else:
            files.append(pattern)
    for f in files:
        check_input_file(f, "waveform file", option)
    return files


def read_waveforms(files: list[str]) -> obspy.Stream:
    """The traces of ``files`` (see :func:`waveform_files`).

    :raises UserError: Naming the first file ObsPy cannot read.
    """
    stream = obspy.Stream()
    for f in files:
        try:
            stream += obspy.read(f)
        except (
            Exception
        ) as e:  # ObsPy raises many types for a file it cannot read; the file is the user's
            raise UserError(
                f"cannot read waveform file {f} ({one_line(e)}); give miniSEED, SAC or another format ObsPy "
                "reads"
            ) from e
    return stream


def read_inventory(
    path: str | list[str],
    option: str = "--inventory",
    stream: obspy.Stream | Iterable[str] | None = None,
) -> obspy.Inventory | pd.DataFrame:
    """Station coordinates (and responses) from a station file: see :func:`sine_seisbench.stations.read_stations`
    for the formats (StationXML and ObsPy's other formats, CSV/TSV/whitespace tables with the usual column
    spellings, a folder or glob pattern of StationXML files). The file's warnings (e.g. no elevation column)
    are printed as one ``sine: warning:`` line each.

    :param stream: The waveforms (or trace ids): they give the networks of a table without a network column.
    :raises UserError: When the file is missing, unreadable, malformed or lacks a column (one line naming the
                       file, the column and its accepted spellings).
    """
    if isinstance(path, str) and not glob.has_magic(path) and not Path(path).is_dir():
        check_input_file(path, "station file", option)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            inventory = read_stations(path, stream=stream)
        except UserError as e:
            raise type(e)(f"{option}: {e}") from e
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"sine: warning: {one_line(str(w.message))}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return inventory


def check_located(
    stream: obspy.Stream,
    inventory: obspy.Inventory | pd.DataFrame,
    source: str,
    drop_unlocated: bool,
) -> None:
    """Raises :class:`UserError` naming the stations of ``stream`` without coordinates in the inventory unless
    ``drop_unlocated`` (then SINE leaves them out with a warning, as the API does).

    :param source: Where the inventory came from, for the message (``"station file X"``, ``"the FDSN service
                   URL"``).
    """
    from .geometry import StationTable, station_key

    if drop_unlocated:
        return
    table = StationTable.from_any(inventory)
    missing = sorted(
        {
            station_key(tr.id)
            for tr in stream
            if "coordinates" not in tr.stats
            and table.get(station_key(tr.id), tr.stats.starttime) is None
        }
    )
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise UserError(
            f"{source} has no coordinates for station(s) {shown}; add them, or pass "
            "--drop-unlocated to leave them out"
        )


__all__ = [
    "DEVICE_HELP",
    "FDSN_HELP",
    "PUBLISHED_WEIGHTS",
    "STATIONS_HELP",
    "UNTRAINED",
    "WEIGHTS_HELP",
    "WEIGHT_SUFFIXES",
    "available_devices",
    "check_input_file",
    "check_located",
    "check_output_file",
    "check_output_folder",
    "load_weights",
    "read_inventory",
    "read_waveforms",
    "resolve_device",
    "resolve_weights",
    "waveform_files",
    "weight_names",
]
