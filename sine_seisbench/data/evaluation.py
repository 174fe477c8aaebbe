"""The evaluation records of the benchmark data, and the guard that keeps them out of training.

:data:`EVALUATION_RECORDS` names the records (by path fragments, stream ids and spans) that the benchmark
evaluates on; :func:`check_not_evaluation` refuses them. The training-data tools
(:mod:`sine_seisbench.data.realdata`, :func:`sine_seisbench.data.simulate.default_noise_paths`) apply it to every
file and trace they read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import obspy


@dataclass(frozen=True)
class EvaluationRecord:
    """A record kept for evaluation.

    :param markers: Path fragments that identify its files.
    :param ids: ``NET.STA.`` (or ``NET.``) prefixes of its stream ids.
    :param start: Start of the evaluation span (stream ids, and paths when ``split_by_time``).
    :param end: End of the evaluation span (exclusive).
    :param split_by_time: The record is split by time: its files are refused only where they reach into the
                          span; otherwise every file of it is refused.
    """

    name: str
    markers: tuple[str, ...]
    ids: tuple[str, ...] = ()
    start: obspy.UTCDateTime | None = None
    end: obspy.UTCDateTime | None = None
    split_by_time: bool = False


#: The evaluation records of the benchmark data (see DATA.md there; the folders of
#: :data:`sine_seisbench.data.layout.LAYOUT`).
EVALUATION_RECORDS: tuple[EvaluationRecord, ...] = (
    EvaluationRecord("stead50", ("stead50",)),
    EvaluationRecord("ncedc154", ("ncedc154",)),
    EvaluationRecord(
        "pnw_2022-02-06",
        ("pnw_2022-02-06",),
        ("PB.B204.", "UW.SHW."),
        obspy.UTCDateTime("2022-02-06T00:00:00"),
        obspy.UTCDateTime("2022-02-07T00:00:00"),
    ),
    EvaluationRecord(
        "ridgecrest_2019-07-06T08",
        ("ridgecrest_2019-07-06T08",),
        ("CI.WNM.", "CI.WRV2.", "CI.WVP2."),
        obspy.UTCDateTime("2019-07-06T08:00:00"),
        obspy.UTCDateTime("2019-07-06T09:00:00"),
    ),
    EvaluationRecord(
        "events/iceland_qm_2014-08-24",
        ("iceland_qm_2014-08-24",),
        ("Z7.",),
        obspy.UTCDateTime("2014-08-24T00:00:00"),
        obspy.UTCDateTime("2014-08-24T00:15:00"),
    ),
    EvaluationRecord(
        "colombia_2019-12-24 after 23:00",
        ("colombia_2019-12-24",),
        ("CM.",),
        obspy.UTCDateTime("2019-12-24T23:00:00"),
        obspy.UTCDateTime("2019-12-25T01:00:00"),
        split_by_time=True,
    ),
)

_NAME_TIMES = re.compile(r"__(\d{8}T\d{6})Z__(\d{8}T\d{6})Z")


def _times_from_name(text: str) -> tuple[obspy.UTCDateTime | None, obspy.UTCDateTime | None]:
    """Start and end of a ``NET.STA.LOC.CHA__YYYYMMDDTHHMMSSZ__YYYYMMDDTHHMMSSZ.mseed`` file name."""
    match = _NAME_TIMES.search(Path(text).name)
    if not match:
        return None, None
    return obspy.UTCDateTime(match.group(1)), obspy.UTCDateTime(match.group(2))


def check_not_evaluation(
    path_or_stream_id: str | Path,
    start: obspy.UTCDateTime | str | None = None,
    end: obspy.UTCDateTime | str | None = None,
) -> None:
    """Refuses evaluation data.

    :param path_or_stream_id: A file path (or glob) or a stream id ``NET.STA.LOC.CHA``.
    :param start: Start of the span to be used; for a path without it, the start in the file name (if any).
    :param end: End of the span (exclusive); as ``start``.
    :raises ValueError: Naming the record, for stead50, ncedc154, pnw_2022-02-06, ridgecrest_2019-07-06T08,
                        events/iceland_qm_2014-08-24 (their files, or their stations' ids within their spans),
                        and for Colombia (path or ``CM.`` id) at or after 2019-12-24T23:00 (before 01:00), or
                        when the span of Colombia data is unknown.
    """
    text = str(path_or_stream_id)
    name_start, name_end = _times_from_name(text)
    t0 = obspy.UTCDateTime(start) if start is not None else name_start
    t1 = obspy.UTCDateTime(end) if end is not None else name_end
    stream_id = Path(text).name.split("__")[0]
    for rec in EVALUATION_RECORDS:
        marker = any(m.lower() in text.lower() for m in rec.markers)
        ident = any((stream_id + ".").startswith(p) for p in rec.ids)
        if not (marker or ident):
            continue
        if marker and not rec.split_by_time:
            raise ValueError(
                f"{text} belongs to the evaluation record {rec.name}: not for training."
            )
        if t0 is None or t1 is None:
            raise ValueError(
                f"{text} may belong to the evaluation record {rec.name} (evaluation span {rec.start} - "
                f"{rec.end}); give the time range to be used."
            )
        if t0 < rec.end and t1 > rec.start:
            raise ValueError(
                f"{text} ({t0} - {t1}) overlaps the evaluation record {rec.name} ({rec.start} - {rec.end}): "
                "not for training."
            )


__all__ = ["EVALUATION_RECORDS", "EvaluationRecord", "check_not_evaluation"]
