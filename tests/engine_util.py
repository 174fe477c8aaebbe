"""Driving the streaming engine over a whole record in tests."""

from __future__ import annotations

import obspy

from sine_seisbench.monitor.schema import split_packets


def run_engine(engine, stream: obspy.Stream, every: int = 24) -> list[dict]:
    """Feeds ``stream`` as 1 s packets in time order, stepping every ``every`` packets, then flushes."""
    out: list[dict] = []
    for i, packet in enumerate(split_packets(stream, 1.0)):
        engine.ingest(packet)
        if i % every == every - 1:
            out += engine.step()
    return out + engine.step(flush=True)


def published_events(messages: list[dict]) -> list[dict]:
    """The latest version of every event not retracted, in origin-time order."""
    latest: dict[str, dict] = {}
    for m in messages:
        if m["type"] == "event":
            latest[m["id"]] = m
    return sorted(
        (m for m in latest.values() if m.get("status") != "retracted"),
        key=lambda m: m["origin_time"],
    )


def streamed_picks(messages: list[dict], before: float) -> set[tuple[str, str, float]]:
    """``(trace id, phase, time rounded to 10 ms)`` of the published picks before ``before`` (UNIX s)."""
    keys = {
        (m["trace_id"], m["phase"], round(obspy.UTCDateTime(m["time"]).timestamp, 2))
        for m in messages
        if m["type"] == "pick"
    }
    return {k for k in keys if k[2] < before}


def assert_same_picks(
    got: set[tuple[str, str, float]],
    expected: set[tuple[str, str, float]],
    tolerance_s: float = 0.011,
) -> None:
    """The same picks, one for one, each within ``tolerance_s``: runs over differently composed batches may
    differ in the last float bits, which moves a peak between two almost equal samples by one sample."""
    remaining = sorted(expected)
    unmatched = []
    for key in sorted(got):
        match = next(
            (e for e in remaining if e[:2] == key[:2] and abs(e[2] - key[2]) <= tolerance_s),
            None,
        )
        if match is None:
            unmatched.append(key)
        else:
            remaining.remove(match)
    assert not unmatched and not remaining, (unmatched, remaining)
