"""Progress bars for long runs, with one process-wide quiet switch.

Every long loop of the package (classify/annotate over many windows, training, simulation, benchmark stages,
archive chunks, publishing) wraps its iterable in :func:`progress`::

    from sine_seisbench.progress import progress

    for window in progress(windows, desc="windows", unit="window"):
        ...

    with progress(total=n, desc="chunks", unit="chunk") as bar:  # updated by hand
        bar.update(1)

The bars are tqdm bars written to stderr (stdout stays for results). They are silenced for the whole process by
:func:`set_quiet` (``sine --quiet`` calls it) or by the environment variable ``SINE_QUIET=1``; a caller can also
silence one bar with ``disable=True``. :func:`set_quiet` wins over the environment variable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

#: The environment variable that silences the bars (``1``, ``true``, ``yes`` or ``on``).
QUIET_ENV = "SINE_QUIET"

_quiet: bool | None = None  # None: follow the environment variable


def set_quiet(quiet: bool | None = True) -> bool | None:
    """Silences (``True``) or shows (``False``) every progress bar of this process; ``None`` goes back to the
    environment variable :data:`QUIET_ENV`.

    :return: The previous setting (pass it to :func:`set_quiet` to restore it).
    """
    global _quiet
    previous = _quiet
    _quiet = None if quiet is None else bool(quiet)
    return previous


def is_quiet() -> bool:
    """True when progress bars are silenced (by :func:`set_quiet` or ``SINE_QUIET=1``)."""
    if _quiet is not None:
        return _quiet
    return os.environ.get(QUIET_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def progress(
    iterable: Iterable[Any] | None = None,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    *,
    disable: bool = False,
    leave: bool = True,
    **kwargs: Any,
) -> tqdm:
    """A tqdm progress bar on stderr, silenced when :func:`is_quiet` (or ``disable``).

    :param iterable: What to iterate over; None for a bar updated by hand (``bar.update(n)``, as a context
                     manager or closed with ``bar.close()``).
    :param total: Number of expected items (default ``len(iterable)`` when it has one).
    :param desc: Short label in front of the bar, e.g. ``"windows"``.
    :param unit: Name of one item, e.g. ``"window"``, ``"event"``, ``"chunk"``.
    :param disable: Silence this bar only.
    :param leave: Keep the finished bar on screen.
    :param kwargs: Any other :class:`tqdm.tqdm` argument (``position``, ``postfix``, ...).
    :return: The :class:`tqdm.tqdm` object: iterate over it, or update it by hand.
    """
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=bool(disable) or is_quiet(),
        leave=leave,
        **kwargs,
    )


__all__ = ["QUIET_ENV", "is_quiet", "progress", "set_quiet"]
