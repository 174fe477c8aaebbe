"""The one SINE weights loader: every command, the archive, training, the demo and the benchmark load weights here.

A weights *spec* is one of

* ``None`` or nothing: the shipped default weights :data:`~sine_seisbench.DEFAULT_WEIGHTS`;
* a name of weights shipped with the package (``sine_pn_original``): read straight from the package, so nothing is
  written to SeisBench's cache and parallel workers never race on it;
* the path of a pair ``NAME.json`` + ``NAME.pt`` written by ``sine train`` or :meth:`SINE.save`, with or without
  the suffix: :meth:`SINE.load`;
* ``"untrained"``: a new, randomly initialised SINE (drawn with ``untrained_seed`` when given, so that every
  process gets the same weights);
* another name: weights published in SeisBench's repository or already in its cache, loaded with
  :meth:`SINE.from_pretrained` (the only case that may use the network).

A spec that is none of these raises :class:`~sine_seisbench.errors.UserError` naming the spec and the choices,
before any network access.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import torch

from . import seisbench_adapter as sba
from .errors import MissingFileError, UserError, did_you_mean, one_line
from .model import DEFAULT_WEIGHTS, SINE

#: Suffixes of the two files of saved weights (``NAME.json`` and ``NAME.pt``).
WEIGHT_SUFFIXES = (".json", ".pt")
#: The spec for untrained (randomly initialised) weights.
UNTRAINED = "untrained"
#: SINE weights published in SeisBench's online repository: only these names may be downloaded. None are
#: published yet, so a spec never goes to the network unless the weights are already in SeisBench's cache.
PUBLISHED_WEIGHTS: tuple[str, ...] = ()


def _cached_names() -> set[str]:
    """Names of the SINE weights in SeisBench's cache (read without network access)."""
    folder = sba.model_cache_folder(SINE)
    if not folder.is_dir():
        return set()
    return {n for n in (sba.parse_weight_filename(f)[0] for f in folder.iterdir()) if n}


def weight_names() -> list[str]:
    """The weights names a spec may give: the shipped ones, the published ones and those already in SeisBench's
    cache (read without network access)."""
    return sorted(set(SINE.shipped_weights()) | set(PUBLISHED_WEIGHTS) | _cached_names())


def _pair(spec: str) -> tuple[Path, list[Path]]:
    path = Path(spec).expanduser()
    base = path.with_suffix("") if path.suffix in WEIGHT_SUFFIXES else path
    return base, [base.with_name(base.name + s) for s in WEIGHT_SUFFIXES]


def resolve_weights(spec: str | os.PathLike[str] | None, option: str = "--weights") -> str:
    """Checks a weights spec without loading it (see the module's docstring).

    :param spec: A name (see :func:`weight_names`), ``"untrained"``, a path to ``NAME.json``/``NAME.pt`` with or
                 without the suffix, or None for :data:`~sine_seisbench.DEFAULT_WEIGHTS`.
    :param option: The option it was given to (for the messages).
    :return: The path without suffix when the files exist, else the name (``"untrained"`` stays as it is).
    :raises UserError: When a path lacks a file or cannot be read, or a name is unknown (listing the names).
    """
    spec = DEFAULT_WEIGHTS if spec is None else os.fspath(spec)
    if spec == UNTRAINED:
        return spec
    base, files = _pair(spec)
    if all(f.is_file() for f in files):
        unreadable = [f for f in files if not os.access(f, os.R_OK)]
        if unreadable:
            raise UserError(f"weights file {unreadable[0]} cannot be read (permission denied)")
        return str(base)
    names = weight_names()
    looks_like_path = (
        Path(spec).suffix in WEIGHT_SUFFIXES
        or "/" in spec
        or os.sep in spec
        or any(f.exists() for f in files)
    )
    if looks_like_path or Path(spec).expanduser().exists():
        missing = [str(f) for f in files if not f.is_file()]
        raise MissingFileError(
            f"{option} {spec}: weights file {missing[0]} does not exist; weights are the pair NAME.json + "
            f"NAME.pt written by `sine train` or SINE.save (give NAME, with or without suffix) or one of the "
            f"names {', '.join(names)}, or {UNTRAINED}"
        )
    if spec in names:
        return spec
    raise UserError(
        f"{option}: unknown weights {spec!r}{did_you_mean(spec, names)} (available names: {', '.join(names)}; "
        f"or {UNTRAINED}, or the path of NAME.json/NAME.pt)"
    )


def untrained(seed: int | None = None, **model_args: Any) -> SINE:
    """A new SINE; with ``seed``, drawn from ``torch.manual_seed(seed)`` without touching the caller's random state
    (the same weights in every process)."""
    if seed is None:
        return SINE(**model_args)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SINE(**model_args)


def load_weights(
    spec: str | os.PathLike[str] | None = DEFAULT_WEIGHTS,
    option: str = "--weights",
    *,
    device: torch.device | str | None = None,
    untrained_seed: int | None = None,
    command: str | None = None,
) -> SINE:
    """The one SINE weights loader (see the module's docstring for the specs).

    :param spec: The weights; None for :data:`~sine_seisbench.DEFAULT_WEIGHTS`.
    :param option: The option the weights were given to (for the messages).
    :param device: Move the model there (default: it stays on the CPU).
    :param untrained_seed: Seed of ``"untrained"`` weights (default: torch's current random state).
    :param command: For ``"untrained"``, print ``COMMAND: using untrained SINE weights ...`` on stderr (the
                    commands pass their name; library callers stay silent).
    :return: The model in eval mode.
    :raises UserError: See :func:`resolve_weights`; also when the files cannot be loaded as SINE weights.
    """
    resolved = resolve_weights(spec, option)
    if resolved == UNTRAINED:
        if command:
            print(
                f"{command}: using untrained SINE weights (outputs are not meaningful).",
                file=sys.stderr,
            )
        model = untrained(untrained_seed)
    elif Path(resolved + ".json").is_file():
        try:
            model = SINE.load(resolved)
        except (
            ValueError,
            KeyError,
            TypeError,
            RuntimeError,
            EOFError,
            pickle.UnpicklingError,
        ) as e:
            raise UserError(
                f"{option} {spec}: {resolved}.json/.pt cannot be loaded as SINE weights ({one_line(e)}); give "
                "weights written by `sine train` or SINE.save"
            ) from e
    elif resolved in (shipped := SINE.shipped_weights()):
        model = SINE.load(
            shipped[resolved]
        )  # straight from the package: nothing written to SeisBench's cache
    else:
        model = SINE.from_pretrained(resolved)
    model.eval()
    return model if device is None else model.to(device)


__all__ = [
    "PUBLISHED_WEIGHTS",
    "UNTRAINED",
    "WEIGHT_SUFFIXES",
    "load_weights",
    "resolve_weights",
    "untrained",
    "weight_names",
]
