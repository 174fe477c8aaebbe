"""The *pick* step: SeisBench's trigger rule on stacked probability curves.

``classify`` picks from its annotation traces (:func:`picks_from_annotations`), the monitor from the stacks
it keeps and ``classify``'s early event step from its growing stacks (:func:`final_picks`, the final part of
each curve); all use the one rule here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import obspy
import seisbench.util as sbu
from obspy.signal.trigger import trigger_onset


def picks_from_curve(
    values: np.ndarray,
    threshold: float,
    trace_id: str,
    phase: str,
    time_of: Callable[[int], obspy.UTCDateTime],
) -> list[sbu.Pick]:
    """The picks on one station's probability curve of one phase, SeisBench's rule: ObsPy's
    ``trigger_onset`` on at ``threshold`` and off below half of it, the peak the largest value between on and
    off (the first of equal ones). ``time_of(i)`` is the time of sample ``i``."""
    picks = []
    for s0, s1 in trigger_onset(values, threshold, threshold / 2):
        segment = values[s0 : s1 + 1]
        picks.append(
            sbu.Pick(
                trace_id=trace_id,
                start_time=time_of(s0),
                end_time=time_of(s1),
                peak_time=time_of(s0 + np.argmax(segment)),
                peak_value=np.max(segment),
                phase=phase,
            )
        )
    return picks


def final_picks(
    values: np.ndarray,
    threshold: float,
    trace_id: str,
    phase: str,
    time_of: Callable[[int], obspy.UTCDateTime],
    complete: bool = False,
) -> tuple[list[sbu.Pick], int]:
    """:func:`picks_from_curve` on the final part of a curve that is still growing (the monitor's stacks,
    ``classify``'s early event step): up to its last sample below half the threshold, so that no trigger is cut
    (all of it when ``complete``). Returns the picks and the number of samples taken (0: none yet; the caller
    resumes there)."""
    if complete:
        cut = len(values)
    else:
        off = np.flatnonzero(values < threshold / 2)
        if len(off) == 0:
            return [], 0
        cut = int(off[-1]) + 1
    return picks_from_curve(values[:cut], threshold, trace_id, phase, time_of), cut


def sample_time(start: obspy.UTCDateTime, i: int, rate: float) -> obspy.UTCDateTime:
    """The time of sample ``i`` of an annotation trace starting at ``start``, as ``trace.times()`` gives it
    (``i / rate`` after the start): the times of ``classify``'s picks and of its early event step's."""
    return start + int(i) / rate


def pick_order(pick: sbu.Pick) -> tuple[int, int, str]:
    """The sort key of a pick: start time, end time (the start where none), trace id: the order SeisBench's
    ``Pick.__lt__`` describes, as a key (its comparison is not a strict order where one pick's span lies within
    another's, and costs two UTCDateTime comparisons per call: ~0.1 s for the 3800 picks of 16 stations x 1 h)."""
    end = pick.start_time if pick.end_time is None else pick.end_time
    return pick.start_time.ns, end.ns, pick.trace_id


def sorted_picks(picks: Iterable[sbu.Pick]) -> sbu.PickList:
    """``picks`` as a PickList in :func:`pick_order`."""
    return sbu.PickList(sorted(picks, key=pick_order))


def picks_from_annotations(
    annotations: obspy.Stream, threshold: float, phase: str
) -> sbu.PickList:
    """SeisBench's ``picks_from_annotations`` (the same picks, tested against it) through
    :func:`picks_from_curve`, the rule the monitor shares."""
    picks = []
    for trace in annotations:
        stats = trace.stats
        start, rate = stats.starttime, float(stats.sampling_rate)
        picks += picks_from_curve(
            trace.data,
            threshold,
            f"{stats.network}.{stats.station}.{stats.location}",
            phase,
            lambda i, start=start, rate=rate: sample_time(start, i, rate),
        )
    return sorted_picks(picks)
