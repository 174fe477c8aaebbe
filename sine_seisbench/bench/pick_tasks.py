"""The three tasks of the SeisBench pick benchmark (Münchmeyer et al., 2022) for any labelled WaveformDataset.

Münchmeyer, J., Woollam, J., Rietbrock, A., Tilmann, F., Lange, D., Bornstein, T., et al. (2022). Which picker
fits my data? A quantitative evaluation of deep learning based seismic pickers. JGR Solid Earth, 127.
Reference implementation: https://github.com/seisbench/pick-benchmark (``generate_eval_targets.py``,
``eval.py``, ``collect_results.py``). This module follows its definitions with its own code:

* **Task 1, event detection.** 30 s windows from the dev and test splits: one per trace with arrivals, at a
  random position containing the first arrival (at least 1 s from either end), and noise windows: a random
  window of every trace without arrivals and, where a trace has at least 30 s before its first arrival, a
  random window of that part. Score: the largest detection probability in the window (EQTransformer: its
  detection curve; PhaseNet, SINE: ``1 - noise``). Metrics: ROC AUC, and precision, recall and F1 on test at
  the threshold that maximises F1 on dev.
* **Task 2, phase identification.** 10 s windows containing exactly one labelled P or S onset (neighbouring
  onsets at least 0.5 s outside, the onset at least 0.5 s from either end). Score: ``max P / max S`` in the
  window (pick-benchmark's score). Metric: Matthews correlation coefficient (MCC) on test at the threshold
  that maximises MCC on dev.
* **Task 3, onset regression.** The same windows: the predicted onset is the argmax of the curve of the true
  phase; residual = predicted - labelled (s). Mean, RMS (pick-benchmark's ``std_s``; here also ``rmse_s``) and
  mean absolute residual, for P and S.

Each target window is placed in a model-length input with the trace around it as context (SeisBench's
``SteeredWindow``, as pick-benchmark does: centred where the trace allows, zero-padded at the end where the
trace is too short); the probability curves are read only over the target window.

Datasets without a ``split`` column (or without both dev and test rows) are split deterministically: the
events (``source_id``; ``trace_name`` where there is none) are ordered by a hash of their key and the first
half is dev, the rest test.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import pandas as pd
import seisbench.models as sbm
import torch
from scipy.stats import rankdata

from ..model import SINE
from ..progress import progress as progress_bar
from ..seisbench_adapter import apply_model_filter

#: Phase names of the ``trace_{phase}_arrival_sample`` columns and the class they count as (pick-benchmark's
#: set of labels; other columns are ignored).
PHASES: dict[str, str] = {
    "p": "P",
    "P": "P",
    "pP": "P",
    "P1": "P",
    "Pg": "P",
    "Pn": "P",
    "PmP": "P",
    "pwP": "P",
    "pwPm": "P",
    "s": "S",
    "S": "S",
    "S1": "S",
    "Sg": "S",
    "SmS": "S",
    "Sn": "S",
}

#: Window lengths in seconds (pick-benchmark: ``30 * sampling_rate`` and ``10 * sampling_rate`` samples).
DETECTION_WINDOW_S = 30.0
PHASE_WINDOW_S = 10.0
#: Least distance (s) of the first arrival from either end of a detection window.
DETECTION_BOUND_S = 1.0
#: Least distance (s) of the onset from either end of a phase window, and least spacing to neighbouring onsets.
PHASE_BOUND_S = 0.5
PHASE_SPACING_S = 0.5

_ARRIVAL_COLUMN = re.compile(r"^trace_(?P<phase>\w+?)_arrival_sample$")
_SCORE_CLIP = 1e100


# ----------------------------------------------------------------------------------------------------------------
# Model adapter
# ----------------------------------------------------------------------------------------------------------------
def native_samples(model: torch.nn.Module) -> int:
    """Input length of ``model`` in samples (PhaseNet 3001, EQTransformer 6000, SINE ``in_samples``)."""
    n = getattr(model, "in_samples", None)
    if not n:
        raise ValueError(
            f"{type(model).__name__} has no in_samples: cannot build its input windows"
        )
    return int(n)


def _component_index(order: str) -> list[int]:
    """Indices that reorder ZNE arrays into ``order``."""
    try:
        return ["ZNE".index(c) for c in order]
    except ValueError as e:
        raise ValueError(
            f"component order {order!r} cannot be built from Z, N, E; only ZNE-based models are supported"
        ) from e


def _forward(model: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Curves ``(batch, samples)`` of one batch of model-length inputs in the model's component order."""
    device = getattr(model, "device", "cpu")
    batch = torch.as_tensor(x, dtype=torch.float32, device=device)
    if isinstance(model, SINE):
        # One-station groups: station 0 is the real one, the rest of the station axis is padding.
        inp, log_scale = model.annotate_batch_pre(batch[:, None], {})
        mask = torch.zeros(inp.shape[:2], dtype=torch.bool, device=device)
        mask[:, 0] = True
        picks = model(inp, station_mask=mask, amplitude=log_scale, event=False)["picks"][:, 0]
        labels = model.labels
        out = {
            "P": picks[:, labels.index("P")],
            "S": picks[:, labels.index("S")],
            "noise": picks[:, labels.index("N")],
        }
    elif isinstance(model, sbm.EQTransformer):
        det, p, s = model(model.annotate_batch_pre(batch, {}))
        out = {"P": p, "S": s, "noise": 1 - det, "detection": det}
    else:
        pred = model(model.annotate_batch_pre(batch, {}))
        if isinstance(pred, (tuple, list)):
            raise TypeError(
                f"{type(model).__name__} returns a tuple; only SINE, EQTransformer and models returning "
                "(batch, labels, samples) arrays are supported"
            )
        labels = list(model.labels)
        if "P" not in labels or "S" not in labels:
            raise ValueError(f"{type(model).__name__} has labels {labels}; P and S are needed")
        out = {"P": pred[:, labels.index("P")], "S": pred[:, labels.index("S")]}
        if "N" in labels:
            out["noise"] = pred[:, labels.index("N")]
        else:
            out["noise"] = (1 - out["P"] - out["S"]).clamp(0, 1)
    return {k: v.detach().float().cpu().numpy() for k, v in out.items()}


def curves(
    model: torch.nn.Module, windows: np.ndarray, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Probability curves of ``model`` for waveform windows.

    The windows are normalised exactly as the model's ``annotate_batch_pre`` does (after reordering the
    components into the model's ``component_order``) and passed through its forward. Windows shorter than the
    model's input length are zero-padded at the end (SeisBench's ``pad`` strategy) and the curves are cut back
    to the window. SINE runs one-station groups (``station_mask`` true for station 0 only).

    :param model: SINE, PhaseNet, EQTransformer or another SeisBench model whose forward returns
                  ``(batch, labels, samples)`` with P and S among ``labels``.
    :param windows: ``(n, 3, samples)`` in ZNE order, ``samples`` at most the model's ``in_samples``.
    :param batch_size: Windows per forward pass.
    :return: ``P``, ``S`` and ``noise`` arrays ``(n, samples)``; EQTransformer adds ``detection`` (its noise is
             ``1 - detection``); a model without a noise label gets ``noise = clip(1 - P - S, 0, 1)``.
    """
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim != 3 or x.shape[1] != 3:
        raise ValueError(f"windows must be (n, 3, samples) in ZNE order, got shape {x.shape}")
    n, _, length = x.shape
    native = native_samples(model)
    if length > native:
        raise ValueError(
            f"windows of {length} samples exceed the {type(model).__name__} input of {native} samples"
        )
    order = _component_index(getattr(model, "component_order", "ZNE") or "ZNE")
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    try:
        with torch.no_grad():
            for i in range(0, n, batch_size):
                chunk = np.zeros((min(batch_size, n - i), 3, native), dtype=np.float32)
                chunk[:, :, :length] = x[i : i + batch_size][:, order]
                for key, value in _forward(model, chunk).items():
                    parts.setdefault(key, []).append(value[:, :length])
    finally:
        model.train(was_training)
    if not parts:
        keys = ["P", "S", "noise"] + (["detection"] if isinstance(model, sbm.EQTransformer) else [])
        return {k: np.zeros((0, length), dtype=np.float32) for k in keys}
    return {k: np.concatenate(v) for k, v in parts.items()}


def window_scores(
    curve: dict[str, np.ndarray], borders: np.ndarray | Sequence[tuple[int, int]]
) -> dict[str, np.ndarray]:
    """Per-window scores from curves, read only between ``borders`` (start, end) of each window.

    :return: ``detection`` (max of the detection curve, else max of ``1 - noise``), ``p_max``, ``s_max``,
             ``p_or_s`` (``p_max / s_max`` clipped to ±1e100, pick-benchmark's score), and ``p_sample``,
             ``s_sample`` (argmax of the P and S curves, relative to the window start).
    """
    borders = np.asarray(borders, dtype=int).reshape(-1, 2)
    n = len(borders)
    out = {k: np.full(n, np.nan) for k in ("detection", "p_max", "s_max", "p_or_s")}
    out["p_sample"] = np.zeros(n, dtype=int)
    out["s_sample"] = np.zeros(n, dtype=int)
    for i, (a, b) in enumerate(borders):
        p = curve["P"][i, a:b]
        s = curve["S"][i, a:b]
        if "detection" in curve:
            out["detection"][i] = curve["detection"][i, a:b].max()
        else:
            out["detection"][i] = (1 - curve["noise"][i, a:b]).max()
        out["p_max"][i], out["s_max"][i] = p.max(), s.max()
        out["p_sample"][i], out["s_sample"][i] = int(np.argmax(p)), int(np.argmax(s))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["p_or_s"] = np.clip(out["p_max"] / out["s_max"], -_SCORE_CLIP, _SCORE_CLIP)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------
def roc_auc(labels: Iterable[bool], scores: Iterable[float]) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties counted half); NaN without both classes."""
    y = np.asarray(list(labels), dtype=bool)
    s = np.asarray(list(scores), dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _confusion(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum(y & pred))
    fp = int(np.sum(~y & pred))
    fn = int(np.sum(y & ~pred))
    tn = int(np.sum(~y & ~pred))
    return tp, fp, fn, tn


def precision_recall_f1(y: Iterable[bool], pred: Iterable[bool]) -> tuple[float, float, float]:
    """Precision, recall and F1 of binary predictions (0 where undefined, as scikit-learn reports)."""
    tp, fp, fn, _ = _confusion(np.asarray(list(y), bool), np.asarray(list(pred), bool))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def mcc(y: Iterable[bool], pred: Iterable[bool]) -> float:
    """Matthews correlation coefficient of binary predictions (0 where undefined)."""
    tp, fp, fn, tn = _confusion(np.asarray(list(y), bool), np.asarray(list(pred), bool))
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den else 0.0


def _candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Thresholds for ``score > t`` that realise every distinct split of ``scores``: one below the smallest
    score and the midpoints between consecutive distinct scores."""
    u = np.unique(scores[np.isfinite(scores)])
    if len(u) == 0:
        return np.array([0.0])
    below = u[0] - max(1.0, abs(u[0]))
    return np.concatenate([[below], (u[:-1] + u[1:]) / 2])


def best_threshold(labels: Iterable[bool], scores: Iterable[float], metric: str) -> float:
    """Threshold ``t`` (positive: ``score > t``) that maximises ``metric`` ("f1" or "mcc") on the given data;
    the lowest such threshold where several tie. NaN scores count as negative."""
    y = np.asarray(list(labels), bool)
    s = np.asarray(list(scores), float)
    fn = {"f1": lambda p: precision_recall_f1(y, p)[2], "mcc": lambda p: mcc(y, p)}[metric]
    thresholds = _candidate_thresholds(s)
    values = [fn(s > t) for t in thresholds]
    return float(thresholds[int(np.argmax(values))])


def detection_metrics(
    dev_labels: Iterable[bool],
    dev_scores: Iterable[float],
    test_labels: Iterable[bool],
    test_scores: Iterable[float],
) -> dict[str, Any]:
    """Task 1 metrics: AUC, and precision/recall/F1 at the dev-F1-optimal threshold, on test (top level) and dev.

    Counts are ``n_earthquake`` and ``n_noise``; metrics that need both classes are NaN when one is missing
    (the F1 threshold needs both classes on dev).
    """
    result: dict[str, Any] = {}
    splits = {
        "dev": (np.asarray(list(dev_labels), bool), np.asarray(list(dev_scores), float)),
        "test": (np.asarray(list(test_labels), bool), np.asarray(list(test_scores), float)),
    }
    y_dev, s_dev = splits["dev"]
    both_dev = y_dev.any() and (~y_dev).any()
    thr = best_threshold(y_dev, s_dev, "f1") if both_dev else math.nan
    for name, (y, s) in splits.items():
        stats: dict[str, Any] = {"n_earthquake": int(y.sum()), "n_noise": int((~y).sum())}
        stats["auc"] = roc_auc(y, s)
        if both_dev and y.any() and (~y).any():
            stats["precision"], stats["recall"], stats["f1"] = precision_recall_f1(y, s > thr)
        else:
            stats["precision"] = stats["recall"] = stats["f1"] = math.nan
        # What can be said with one class only: the share of windows scored above 0.5
        stats["earthquake_above_0.5"] = float(np.mean(s[y] > 0.5)) if y.any() else math.nan
        stats["noise_above_0.5"] = float(np.mean(s[~y] > 0.5)) if (~y).any() else math.nan
        if name == "test":
            result.update(stats)
        else:
            result["dev"] = stats
    result["threshold"] = thr
    return result


def phase_metrics(
    dev_is_p: Iterable[bool],
    dev_scores: Iterable[float],
    test_is_p: Iterable[bool],
    test_scores: Iterable[float],
) -> dict[str, Any]:
    """Task 2 metrics: MCC of "P" (``score > threshold``) at the dev-MCC-optimal threshold, on test (top level)
    and dev, with the counts ``n_P`` and ``n_S``."""
    result: dict[str, Any] = {}
    y_dev = np.asarray(list(dev_is_p), bool)
    s_dev = np.asarray(list(dev_scores), float)
    ok = y_dev.any() and (~y_dev).any()
    thr = best_threshold(y_dev, s_dev, "mcc") if ok else math.nan
    for name, (y, s) in {
        "dev": (y_dev, s_dev),
        "test": (np.asarray(list(test_is_p), bool), np.asarray(list(test_scores), float)),
    }.items():
        stats: dict[str, Any] = {"n_P": int(y.sum()), "n_S": int((~y).sum())}
        stats["mcc"] = mcc(y, s > thr) if ok and y.any() and (~y).any() else math.nan
        if name == "test":
            result.update(stats)
        else:
            result["dev"] = stats
    result["threshold"] = thr
    return result


def onset_metrics(residuals_s: Iterable[float]) -> dict[str, Any]:
    """Task 3 statistics of onset residuals in seconds: ``n``, ``mean_s``, ``rmse_s`` (= pick-benchmark's
    ``std_s``, which is the root mean square), ``std_s``, ``mae_s`` and ``within_0.1s`` (the fraction of residuals
    with magnitude at most 0.1 s); NaN when empty."""
    r = np.asarray(list(residuals_s), dtype=float)
    if len(r) == 0:
        return {
            "n": 0,
            "mean_s": math.nan,
            "rmse_s": math.nan,
            "std_s": math.nan,
            "mae_s": math.nan,
            "within_0.1s": math.nan,
        }
    rms = float(np.sqrt(np.mean(r**2)))
    return {
        "n": int(len(r)),
        "mean_s": float(np.mean(r)),
        "rmse_s": rms,
        "std_s": rms,
        "mae_s": float(np.mean(np.abs(r))),
        "within_0.1s": float(np.mean(np.abs(r) <= 0.1 + 1e-9)),
    }


# ----------------------------------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------------------------------
def _window_containing(
    rng: np.random.Generator,
    npts: int,
    length: int,
    containing: int | None = None,
    bounds: tuple[int, int] = (0, 0),
) -> tuple[int, int]:
    """A random window of ``length`` samples in ``[0, npts)``, containing sample ``containing`` at least
    ``bounds`` samples from its start and end; the whole range where that is impossible or ``npts`` is short
    (the caller drops windows longer than ``length``)."""
    if npts <= length:
        return 0, npts
    if containing is None:
        start = int(rng.integers(0, npts - length, endpoint=True))
        return start, start + length
    earliest = max(0, containing - length + bounds[1])
    latest = min(npts - length, containing - bounds[0])
    if latest <= earliest:
        return 0, npts
    start = int(rng.integers(earliest, latest, endpoint=True))
    return start, start + length


@dataclass
class _Window:
    trace: int
    split: str
    task: str  # "1" or "23"
    start: int
    end: int
    label: str  # task 1: "earthquake"/"noise"; task 23: "P"/"S"
    onset: float = math.nan


def arrival_columns(metadata: pd.DataFrame) -> dict[str, str]:
    """The metadata columns ``trace_{phase}_arrival_sample`` with a known phase, mapped to "P" or "S"."""
    out = {}
    for col in metadata.columns:
        m = _ARRIVAL_COLUMN.match(col)
        if m and m.group("phase") in PHASES:
            out[col] = PHASES[m.group("phase")]
    return out


def _arrivals(row: pd.Series, columns: dict[str, str], scale: float, npts: int) -> list[tuple]:
    out = []
    for col, phase in columns.items():
        v = row[col]
        try:
            v = float(v) * scale
        except (TypeError, ValueError):
            continue
        if np.isfinite(v) and 0 <= v < npts:
            out.append((v, phase, col))
    return sorted(out)


def _task1_windows(
    rng: np.random.Generator, arrivals: list[tuple], npts: int, length: int, bound: int
) -> tuple[list[tuple[int, int, str]], bool]:
    """Task 1 windows of one trace and whether a trace with arrivals lacked room for a noise window."""
    if not arrivals:
        a, b = _window_containing(rng, npts, length)
        return [(a, b, "noise")], False
    out = []
    first = arrivals[0][0]
    a, b = _window_containing(rng, npts, length, int(round(first)), (bound, bound))
    if b - a <= length:
        out.append((a, b, "earthquake"))
    # Noise before the first arrival: at least one full window must fit in front of it.
    if math.floor(first) >= length:
        a, b = _window_containing(rng, min(npts, math.floor(first)), length)
        out.append((a, b, "noise"))
        return out, False
    return out, True


def _task23_windows(
    rng: np.random.Generator,
    arrivals: list[tuple],
    npts: int,
    length: int,
    bound: int,
    spacing: int,
) -> list[tuple[int, int, str, float]]:
    """Task 2/3 windows of one trace: each onset alone in its window (neighbours ``spacing`` outside)."""
    out = []
    for i, (onset, phase, _) in enumerate(arrivals):
        lo = 0 if i == 0 else int(arrivals[i - 1][0]) + spacing
        hi = math.inf if i == len(arrivals) - 1 else int(arrivals[i + 1][0]) - spacing
        if hi - lo < length or lo > onset or hi < onset:
            continue
        hi = int(min(hi, npts))
        a, b = _window_containing(rng, hi - lo, length, int(round(onset)) - lo, (bound, bound))
        if b - a <= length:
            out.append((a + lo, b + lo, phase, float(onset)))
    return out


def split_traces(dataset: Any) -> tuple[np.ndarray, str]:
    """Dev/test assignment of every trace (``"dev"``, ``"test"`` or ``""`` for neither) and how it was made.

    The dataset's ``split`` column where it has dev and test rows; otherwise its dev and test rows pooled (all
    rows where it has neither) are split by event: the keys (``source_id``, else ``trace_name``) ordered by
    their SHA-1 hash, the first half dev.
    """
    meta = dataset.metadata
    n = len(meta)
    if "split" in meta.columns:
        split = meta["split"].astype(str).str.lower().to_numpy()
        if (split == "dev").any() and (split == "test").any():
            return np.where(np.isin(split, ["dev", "test"]), split, ""), "split column"
        pool = np.isin(split, ["dev", "test"])
        if not pool.any():
            pool = np.ones(n, bool)
    else:
        pool = np.ones(n, bool)
    if "source_id" in meta.columns and meta["source_id"].notna().all():
        key_name, keys = "source_id", meta["source_id"].astype(str).to_numpy()
    elif "trace_name" in meta.columns:
        key_name, keys = "trace_name", meta["trace_name"].astype(str).to_numpy()
    else:
        key_name, keys = "row", np.arange(n).astype(str)
    unique = sorted(set(keys[pool]), key=lambda k: hashlib.sha1(k.encode()).hexdigest())
    dev_keys = set(unique[: (len(unique) + 1) // 2])
    out = np.array([""] * n, dtype=object)
    out[pool] = ["dev" if k in dev_keys else "test" for k in keys[pool]]
    return out.astype(str), f"hash of {key_name}, 50/50"


# ----------------------------------------------------------------------------------------------------------------
# Data access
# ----------------------------------------------------------------------------------------------------------------
def _sampling_rate(dataset: Any) -> float:
    sr = getattr(dataset, "sampling_rate", None)
    if sr is not None:
        return float(sr)
    meta = dataset.metadata
    if "trace_sampling_rate_hz" in meta.columns:
        rates = meta["trace_sampling_rate_hz"].dropna().unique()
        if len(rates) == 1:
            return float(rates[0])
    raise ValueError(
        "the dataset has no single sampling rate: open it with sampling_rate=<the model's rate>"
    )


def _waveform(dataset: Any, idx: int) -> np.ndarray:
    """One trace as float32 ``(3, samples)`` in ZNE order, NaN set to zero."""
    wave = np.asarray(dataset.get_waveforms(int(idx)), dtype=np.float32)
    dims = str(getattr(dataset, "dimension_order", "NCW")).replace("N", "")
    if dims == "WC":
        wave = wave.T
    order = getattr(dataset, "component_order", "ZNE") or "ZNE"
    order = "".join(order)
    if order != "ZNE":
        try:
            wave = wave[[order.index(c) for c in "ZNE"]]
        except ValueError as e:
            raise ValueError(f"the dataset's component order {order!r} lacks Z, N or E") from e
    return np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)


def _filter(model: Any, wave: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Applies the model's own stream filter (``filter_args``/``filter_kwargs``, as ``annotate`` does)."""
    if (
        getattr(model, "filter_args", None) is None
        and getattr(model, "filter_kwargs", None) is None
    ):
        return wave
    stream = obspy.Stream(
        [
            obspy.Trace(
                wave[i].astype(np.float64),
                header={"channel": f"HH{c}", "sampling_rate": sampling_rate},
            )
            for i, c in enumerate("ZNE")
        ]
    )
    apply_model_filter(model, stream)
    return np.stack([tr.data for tr in stream]).astype(np.float32)


def _model_window(
    wave: np.ndarray, start: int, end: int, native: int, context: str
) -> tuple[np.ndarray, int]:
    """The model-length input around the target ``[start, end)`` and the target's offset in it.

    ``context="trace"``: SeisBench's ``SteeredWindow`` (target centred, moved to stay inside the trace, zero
    padding at the end of too short traces); ``"zeros"``: the target centred in zeros.
    """
    npts = wave.shape[-1]
    out = np.zeros((3, native), dtype=np.float32)
    if end - start > native:
        raise ValueError(
            f"target window of {end - start} samples exceeds the model input of {native}"
        )
    if context == "zeros":
        off = (native - (end - start)) // 2
        out[:, off : off + end - start] = wave[:, start:end]
        return out, off
    p0 = start - (native - (end - start)) // 2
    if p0 + native > npts:
        p0 = npts - native
    p0 = max(0, p0)
    seg = wave[:, p0 : p0 + native]
    out[:, : seg.shape[-1]] = seg
    return out, start - p0


def _model_name(model: Any) -> str:
    return type(model).__name__


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------
def evaluate_pick_tasks(
    model: torch.nn.Module,
    dataset: Any,
    seed: int = 0,
    tasks: Sequence[int] = (1, 2, 3),
    progress: bool = True,
    *,
    batch_size: int = 64,
    context: str = "trace",
    apply_filter: bool = True,
) -> dict[str, Any]:
    """Runs pick-benchmark tasks 1-3 of ``model`` on the dev and test traces of ``dataset``.

    The target windows depend only on the dataset and ``seed`` (not on the model), so models evaluated with the
    same seed see the same windows.

    :param model: SINE, a SeisBench PhaseNet or EQTransformer (or another model :func:`curves` supports).
    :param dataset: A SeisBench ``WaveformDataset`` (or ``MultiWaveformDataset``) at the model's sampling rate,
                    e.g. ``WaveformDataset(path, component_order="ZNE", sampling_rate=100)``.
    :param seed: Seed of the random window positions.
    :param tasks: Subset of ``(1, 2, 3)``.
    :param progress: Show a progress bar over the traces (see :mod:`sine_seisbench.progress`).
    :param batch_size: Windows per forward pass.
    :param context: ``"trace"`` (pick-benchmark: the rest of the model input is the trace around the target
                    window) or ``"zeros"`` (the target window alone, zero-padded).
    :param apply_filter: Filter traces with the model's ``filter_args`` as its ``annotate`` would (e.g. the
                         1-45 Hz band-pass of the original EQTransformer weights).
    :return: ``{"model", "dataset", "seed", "sampling_rate", "model_samples", "context", "filter", "split",
             "task1", "task2", "task3", "notes"}``. Task entries hold the test metrics at the top level and the
             dev metrics under ``"dev"``: ``task1`` ``auc``, ``f1``, ``precision``, ``recall``, ``threshold``,
             ``n_earthquake``, ``n_noise``; ``task2`` ``mcc``, ``threshold``, ``n_P``, ``n_S``; ``task3``
             ``P`` and ``S`` with ``n``, ``mean_s``, ``rmse_s``, ``std_s`` (= ``rmse_s``), ``mae_s``.
    """
    tasks = tuple(sorted({int(t) for t in tasks}))
    if not tasks or any(t not in (1, 2, 3) for t in tasks):
        raise ValueError(f"tasks must be a non-empty subset of (1, 2, 3), got {tasks}")
    if context not in ("trace", "zeros"):
        raise ValueError(f"context must be 'trace' or 'zeros', got {context!r}")
    sr = _sampling_rate(dataset)
    model_sr = getattr(model, "sampling_rate", None)
    if model_sr is not None and abs(float(model_sr) - sr) > 1e-6:
        raise ValueError(
            f"the dataset is at {sr} Hz but {type(model).__name__} expects {model_sr} Hz: open the dataset "
            f"with sampling_rate={model_sr}"
        )
    native = native_samples(model)
    det_len = int(round(DETECTION_WINDOW_S * sr))
    phase_len = int(round(PHASE_WINDOW_S * sr))
    for length in ([det_len] if 1 in tasks else []) + ([phase_len] if {2, 3} & set(tasks) else []):
        if length > native:
            raise ValueError(
                f"{type(model).__name__} takes {native} samples, fewer than a {length}-sample target window"
            )

    meta = dataset.metadata
    splits, split_source = split_traces(dataset)
    columns = arrival_columns(meta)
    scale = np.ones(len(meta))
    if "trace_sampling_rate_hz" in meta.columns:
        scale = (sr / meta["trace_sampling_rate_hz"].astype(float)).fillna(1.0).to_numpy()
    rng1 = np.random.default_rng([seed, 1])
    rng23 = np.random.default_rng([seed, 23])
    det_bound = int(round(DETECTION_BOUND_S * sr))
    ph_bound = int(round(PHASE_BOUND_S * sr))
    ph_spacing = int(round(PHASE_SPACING_S * sr))
    filter_model = model if apply_filter else None

    windows: list[_Window] = []
    scores: dict[str, list[np.ndarray]] = {}
    buffer: list[np.ndarray] = []
    borders: list[tuple[int, int]] = []
    no_noise_room = 0
    traces_used = {"dev": 0, "test": 0}

    def flush() -> None:
        if not buffer:
            return
        c = curves(model, np.stack(buffer), batch_size=batch_size)
        for k, v in window_scores(c, borders).items():
            scores.setdefault(k, []).append(v)
        buffer.clear()
        borders.clear()

    indices = np.flatnonzero(np.isin(splits, ["dev", "test"]))
    bar = progress_bar(
        indices,
        desc=f"pick tasks {_model_name(model)} {_dataset_name(dataset)}",
        disable=not progress,
        unit="trace",
    )
    for idx in bar:
        wave = _waveform(dataset, idx)
        npts = wave.shape[-1]
        arrivals = _arrivals(meta.iloc[idx], columns, float(scale[idx]), npts)
        split = str(splits[idx])
        traces_used[split] += 1
        targets: list[_Window] = []
        if 1 in tasks:
            t1, lacking = _task1_windows(rng1, arrivals, npts, det_len, det_bound)
            no_noise_room += int(lacking)
            targets += [_Window(int(idx), split, "1", a, b, lab) for a, b, lab in t1]
        if 2 in tasks or 3 in tasks:
            t23 = _task23_windows(rng23, arrivals, npts, phase_len, ph_bound, ph_spacing)
            targets += [_Window(int(idx), split, "23", a, b, ph, on) for a, b, ph, on in t23]
        if not targets:
            continue
        if filter_model is not None:
            wave = _filter(filter_model, wave, sr)
        for w in targets:
            x, off = _model_window(wave, w.start, w.end, native, context)
            buffer.append(x)
            borders.append((off, off + w.end - w.start))
            windows.append(w)
        if len(buffer) >= batch_size:
            flush()
    flush()
    bar.close()

    table = pd.DataFrame([w.__dict__ for w in windows])
    for k, v in scores.items():
        table[k] = np.concatenate(v) if v else np.zeros(0)
    if table.empty:
        table = pd.DataFrame(
            columns=["split", "task", "label", "start", "onset", "detection", "p_or_s"]
        )

    notes: list[str] = []
    result: dict[str, Any] = {
        "model": _model_name(model),
        "dataset": _dataset_name(dataset),
        "seed": int(seed),
        "sampling_rate": sr,
        "model_samples": native,
        "context": context,
        "filter": _filter_description(model) if apply_filter else None,
        "split": {
            "source": split_source,
            "dev_traces": traces_used["dev"],
            "test_traces": traces_used["test"],
        },
    }
    if 1 in tasks:
        t1 = table[table["task"] == "1"]
        dev, test = t1[t1["split"] == "dev"], t1[t1["split"] == "test"]
        res1 = detection_metrics(
            dev["label"] == "earthquake",
            dev["detection"],
            test["label"] == "earthquake",
            test["detection"],
        )
        res1["traces_without_noise_room"] = no_noise_room
        note = None
        if (t1["label"] == "noise").sum() == 0 or (t1["label"] == "earthquake").sum() == 0:
            missing = "noise" if (t1["label"] == "noise").sum() == 0 else "earthquake"
            note = f"task 1: no {missing} windows"
            if missing == "noise":
                note += (
                    f" (no noise traces, and {no_noise_room} of the traces with arrivals have less than "
                    f"{DETECTION_WINDOW_S:g} s before their first arrival)"
                )
            note += (
                f"; AUC and F1 need both classes and are NaN; "
                f"{len(t1)} windows scored (dev {len(dev)}, test {len(test)}), see *_above_0.5"
            )
        elif res1["dev"]["n_noise"] == 0 or res1["dev"]["n_earthquake"] == 0:
            note = "task 1: dev lacks one class; no F1 threshold"
        elif no_noise_room:
            note = (
                f"task 1: {no_noise_room} traces with arrivals have less than {DETECTION_WINDOW_S:g} s "
                "before their first arrival and give no noise window"
            )
        res1["note"] = note
        if note:
            notes.append(note)
        result["task1"] = res1
    t23 = table[table["task"] == "23"]
    if 2 in tasks:
        dev, test = t23[t23["split"] == "dev"], t23[t23["split"] == "test"]
        res2 = phase_metrics(
            dev["label"] == "P", dev["p_or_s"], test["label"] == "P", test["p_or_s"]
        )
        if math.isnan(res2["mcc"]):
            res2["note"] = "task 2: P and S windows are needed on dev and test; MCC is NaN"
            notes.append(res2["note"])
        result["task2"] = res2
    if 3 in tasks:
        res3: dict[str, Any] = {"dev": {}}
        for split_name in ("dev", "test"):
            part = t23[t23["split"] == split_name]
            target = res3["dev"] if split_name == "dev" else res3
            for phase in ("P", "S"):
                rows = part[part["label"] == phase]
                col = "p_sample" if phase == "P" else "s_sample"
                resid = (rows["start"] + rows[col] - rows["onset"]) / sr if len(rows) else []
                target[phase] = onset_metrics(resid)
        result["task3"] = res3
    result["notes"] = notes
    return result


def _dataset_name(dataset: Any) -> str:
    path = getattr(dataset, "path", None)
    if path is not None:
        return Path(path).name
    datasets = getattr(dataset, "datasets", None)
    if datasets:
        return "+".join(_dataset_name(d) for d in datasets)
    return type(dataset).__name__


def _filter_description(model: Any) -> str | None:
    args = getattr(model, "filter_args", None)
    kwargs = getattr(model, "filter_kwargs", None)
    if args is None and kwargs is None:
        return None
    return f"{args} {kwargs}"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def format_table(results: dict[str, dict]) -> str:
    """A markdown table of test metrics across runs, with the runs' notes underneath.

    :param results: Run label (e.g. ``"PhaseNet / stead50"``) -> result of :func:`evaluate_pick_tasks`.
    """
    header = [
        "run",
        "T1 n eq/noise",
        "T1 AUC",
        "T1 F1",
        "T2 n P/S",
        "T2 MCC",
        "T3 P n",
        "P mean (s)",
        "P RMSE (s)",
        "P MAE (s)",
        "T3 S n",
        "S mean (s)",
        "S RMSE (s)",
        "S MAE (s)",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    footnotes = []
    for label, res in results.items():
        t1, t2, t3 = res.get("task1") or {}, res.get("task2") or {}, res.get("task3") or {}
        p, s = t3.get("P") or {}, t3.get("S") or {}
        row = [
            label,
            f"{t1['n_earthquake']}/{t1['n_noise']}" if t1 else "–",
            _fmt(t1.get("auc")),
            _fmt(t1.get("f1")),
            f"{t2['n_P']}/{t2['n_S']}" if t2 else "–",
            _fmt(t2.get("mcc")),
            _fmt(p.get("n")),
            _fmt(p.get("mean_s")),
            _fmt(p.get("rmse_s")),
            _fmt(p.get("mae_s")),
            _fmt(s.get("n")),
            _fmt(s.get("mean_s")),
            _fmt(s.get("rmse_s")),
            _fmt(s.get("mae_s")),
        ]
        lines.append("| " + " | ".join(row) + " |")
        footnotes += [f"- {label}: {note}" for note in res.get("notes", [])]
    text = "\n".join(lines)
    caption = "\n\nTest split; thresholds (T1 F1, T2 MCC) chosen on dev. RMSE is pick-benchmark's `std_s`."
    return text + caption + ("\n\n" + "\n".join(footnotes) if footnotes else "")


__all__ = [
    "curves",
    "window_scores",
    "roc_auc",
    "precision_recall_f1",
    "mcc",
    "best_threshold",
    "detection_metrics",
    "phase_metrics",
    "onset_metrics",
    "split_traces",
    "arrival_columns",
    "native_samples",
    "evaluate_pick_tasks",
    "format_table",
]
