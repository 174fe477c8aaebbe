"""The *run* step: the network on batches of prepared station-group windows, predictions stacked per station.

``classify``/``annotate`` run it over a whole record (:func:`annotate_record`); the monitor calls
:func:`run_and_stack` on the windows that became ready; the event step calls :func:`run_groups` on candidate
windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import obspy
import seisbench
import torch

from .. import seisbench_adapter as sba
from ..nn.onnx_backend import check_backend
from ..progress import progress
from .prepare import (
    GridRecord,
    OutageLog,
    Stack,
    StationSet,
    WindowItem,
    mask_prediction,
    stack_to_traces,
    window_items,
    window_starts,
)

if TYPE_CHECKING:
    from ..model import SINE

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass
class GroupBatch:
    """The network's inputs for windows of station groups (:func:`prepare_groups`): normalised waveforms
    ``(windows, stations, components, samples)``, positions, calibration and station masks, and the log10
    amplitude scales ``(windows, stations)``."""

    x: torch.Tensor
    positions: torch.Tensor
    calibrated: torch.Tensor
    mask: torch.Tensor
    log_scale: torch.Tensor


def prepare_groups(
    model: SINE, stations: StationSet, windows: list[np.ndarray], groups: list[list[str]]
) -> GroupBatch:
    """The inputs of :func:`run_prepared` for windows ``(stations, components, samples)`` of the given station
    groups (every group at most ``max_stations``): the station axis padded to the largest group, normalised as
    :meth:`SINE.annotate_batch_pre` (:meth:`SINE.normalise`), stations with non-finite values left out."""
    for group in groups:
        if len(group) > model.max_stations:
            raise ValueError(
                f"A group of {len(group)} stations exceeds max_stations={model.max_stations}: {group}"
            )
    # the station axis only as long as the largest group of the batch (the network runs on stations with data
    # only; padding to max_stations cost normalisation, masking and copies of empty stations)
    n_st = max(len(group) for group in groups)
    n_samples = windows[0].shape[-1]
    data = np.zeros((len(windows), n_st, model.in_channels, n_samples), dtype=np.float32)
    positions = np.zeros((len(windows), n_st, 3), dtype=np.float32)
    calibrated = np.zeros((len(windows), n_st), dtype=bool)
    mask = np.zeros((len(windows), n_st), dtype=bool)
    for i, (window, group) in enumerate(zip(windows, groups, strict=True)):
        data[i, : window.shape[0]] = window
        pos, cal, _ = stations.group_inputs(group)
        positions[i, : len(group)] = pos
        calibrated[i, : len(group)] = cal
        mask[i, : len(group)] = True
    device = model.device
    x = torch.as_tensor(data, device=device)
    x, log_scale = model.normalise(x)
    finite = torch.isfinite(x).all(-1).all(-1) & torch.isfinite(log_scale)
    # numerically unusable windows never reach the network (through the graph they would spread NaN to
    # every station of the group)
    if not bool(finite.all()):
        bad = (~finite).nonzero().tolist()
        names = sorted({groups[i][j] for i, j in bad if j < len(groups[i])})
        seisbench.logger.warning(
            f"SINE: non-finite values after normalisation for {', '.join(names)}; these stations are "
            "left out of the affected windows."
        )
        x = torch.where(finite[..., None, None], x, torch.zeros_like(x))
        log_scale = torch.where(finite, log_scale, torch.zeros_like(log_scale))
        mask &= finite.cpu().numpy()
    return GroupBatch(
        x,
        torch.as_tensor(positions, device=device),
        torch.as_tensor(calibrated, device=device),
        torch.as_tensor(mask, device=device),
        log_scale,
    )


def run_prepared(
    model: SINE, batch: GroupBatch, argdict: dict[str, Any], event: bool = True
) -> dict[str, torch.Tensor]:
    """The network on a :func:`prepare_groups` batch, in eval mode without gradients (see
    :meth:`SINE.forward`; station axis as long as the largest group)."""
    # Inference always in eval mode: in train mode BatchNorm would use batch statistics and update its
    # running statistics, so results would depend on the batch and change the model.
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(
                batch.x,
                positions=batch.positions,
                station_mask=batch.mask,
                amplitude=batch.log_scale,
                calibrated=batch.calibrated,
                event=event,
                graph_picks=bool(sba.arg(model, argdict, "graph_picks")),
                backend=check_backend(sba.arg(model, argdict, "inference_backend")),
            )
    finally:
        model.train(was_training)


def run_groups(
    model: SINE,
    stations: StationSet,
    windows: list[np.ndarray],
    groups: list[list[str]],
    argdict: dict[str, Any],
    event: bool = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`run_prepared` on :func:`prepare_groups` of windows ``(stations, components, samples)`` of the
    given station groups.

    :return: The network's outputs (see :meth:`SINE.forward`; station axis as long as the largest group) and
             the log10 amplitude scales ``(batch, stations)``.
    """
    batch = prepare_groups(model, stations, windows, groups)
    return run_prepared(model, batch, argdict, event), batch.log_scale


def pipelined(
    jobs: Iterable[Job], work: Callable[[Job], Result], use: Callable[[Job, Result], None]
) -> None:
    """``use(job, work(job))`` for each job in order, ``work`` (the network: ONNX Runtime and torch release the
    GIL) running in a worker thread one job ahead of ``use`` (Python: stacking, the event step) and of the
    preparation of the next job (``jobs`` may be a generator), so that the two overlap. The same calls in the
    same order as a plain loop, so the same results; an exception of either is raised here."""
    with ThreadPoolExecutor(1, thread_name_prefix="sine-network") as pool:
        previous: tuple[Job, Future[Result]] | None = None
        for job in jobs:
            future = pool.submit(work, job)
            if previous is not None:
                use(previous[0], previous[1].result())
            previous = (job, future)
        if previous is not None:
            use(previous[0], previous[1].result())


def prepare_batch(model: SINE, stations: StationSet, items: list[WindowItem]) -> GroupBatch:
    """:func:`prepare_groups` of one batch of :func:`~sine_seisbench.pipeline.prepare.window_items`."""
    return prepare_groups(model, stations, [item[2] for item in items], [item[1] for item in items])


def run_batch(model: SINE, batch: GroupBatch, argdict: dict[str, Any]) -> np.ndarray:
    """The network on one :func:`prepare_batch` with blinded edges (:meth:`SINE.annotate_batch_post`):
    ``(items, stations, samples, phases)``."""
    out = run_prepared(model, batch, argdict, False)
    return model.annotate_batch_post(out, batch.log_scale, argdict).cpu().numpy()


def stack_batch(
    items: list[WindowItem],
    preds: np.ndarray,
    stacks: dict[str, Stack],
    new_stack: Callable[[str, int], Stack],
) -> None:
    """Each station's prediction of :func:`run_batch` masked where it had no sample and added to its stack in
    ``stacks`` (``new_stack(station, window start)`` makes a missing one)."""
    for (start, group, _, haves), pred in zip(items, preds, strict=True):
        for j, key in enumerate(group):
            stack = stacks.get(key)
            if stack is None:
                stack = stacks[key] = new_stack(key, start)
            stack.add(start, mask_prediction(pred[j].T, haves[j]))


def run_and_stack(
    model: SINE,
    stations: StationSet,
    batches: Iterable[list[WindowItem]],
    stacks: dict[str, Stack],
    argdict: dict[str, Any],
    new_stack: Callable[[str, int], Stack],
    on_stacked: Callable[[int], None] | None = None,
) -> None:
    """:func:`run_batch` and :func:`stack_batch` on batches of window items, the network of one batch
    overlapping the stacking of the one before and the preparation of the next (:func:`pipelined`).

    :param on_stacked: Called after each batch is stacked with the start of its last window: the batches come
                       in window order, so the stacks are final before that grid index.
    """

    def use(job: tuple[list[WindowItem], GroupBatch], preds: np.ndarray) -> None:
        items = job[0]
        stack_batch(items, preds, stacks, new_stack)
        if on_stacked is not None and items:
            on_stacked(items[-1][0])

    # the inputs are prepared in this thread (the generator), the network thread only runs the network: it is
    # the annotation's longest path
    jobs = ((items, prepare_batch(model, stations, items)) for items in batches)
    pipelined(jobs, lambda job: run_batch(model, job[1], argdict), use)


def annotate_record(
    model: SINE,
    record: GridRecord,
    stations: StationSet,
    argdict: dict[str, Any],
    on_stacked: Callable[[dict[str, Stack], int], None] | None = None,
) -> dict[str, Stack]:
    """The run step over a whole record: windows on one grid from the record's first sample, every station
    with data in a window taking part (gaps filled, its output masked there), predictions of overlapping
    windows and of overlapping groups stacked per station.

    :param on_stacked: ``on_stacked(stacks, final)`` after each batch: the stacks so far, final before grid
                       index ``final`` (``classify`` starts its event step there: :class:`~.locate.EarlyEvents`).
    """
    n = model.in_samples
    stride = sba.window_stride(model, argdict)
    if stride < 1:
        raise ValueError(f"overlap must be smaller than the window ({n} samples)")
    batch_size = int(sba.arg(model, argdict, "batch_size"))
    method = sba.arg(model, argdict, "stacking").lower()
    if method not in ("avg", "max"):
        raise ValueError(f"Stacking method {method!r} unknown; use 'avg' or 'max'.")
    stacks: dict[str, Stack] = {}
    outages = OutageLog()

    def new_stack(key: str, start: int) -> Stack:
        return Stack(len(model.labels), start, method)

    starts = list(window_starts(record.start, record.end, n, stride))

    def batches() -> Iterator[list[WindowItem]]:
        pending: list[WindowItem] = []
        # a bar only for long records (sine --quiet / SINE_QUIET=1 silence it)
        for start in progress(
            starts, desc="SINE windows", unit="window", disable=len(starts) < 20, leave=False
        ):
            raw = {
                key: station.read(start, n)
                for key, station in record.stations.items()
                if station.base < start + n and station.end > start
            }
            # outages are reported at the end
            items, _ = window_items(model, stations, start, raw, outages, argdict)
            for item in items:
                pending.append(item)
                if len(pending) >= batch_size:
                    yield pending
                    pending = []
        if pending:
            yield pending

    run_and_stack(
        model,
        stations,
        batches(),
        stacks,
        argdict,
        new_stack,
        None if on_stacked is None else (lambda final: on_stacked(stacks, final)),
    )
    outages.report(model.sampling_rate)
    return stacks


def stacks_to_stream(
    model: SINE, stacks: dict[str, Stack], only: Iterable[str] | None = None
) -> obspy.Stream:
    """Annotation traces ``NET.STA.LOC.SINE_P/_S/_N`` of the stacks, one per contiguous span of data (of the
    labels ``only``, default all)."""
    out = obspy.Stream()
    for key in sorted(stacks):
        out += stack_to_traces(
            key, stacks[key], model.labels, model.sampling_rate, model.__class__.__name__, only
        )
    return out
