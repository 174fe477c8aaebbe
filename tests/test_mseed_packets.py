"""miniSEED packets decoded by libmseed (``pymseed``) give the traces ObsPy's reader gives."""

from __future__ import annotations

import io

import numpy as np
import obspy
import pytest

from sine_seisbench.monitor.base import MalformedPacket
from sine_seisbench.monitor.schema import _read_libmseed, decode_packet
from sine_seisbench.seisbench_adapter import read_mseed_bytes

pytest.importorskip("pymseed")


def _bytes(stream: obspy.Stream, **kwargs) -> bytes:
    buf = io.BytesIO()
    stream.write(buf, format="MSEED", **kwargs)
    return buf.getvalue()


def _packets() -> dict[str, bytes]:
    base = obspy.read()  # BW.RJOB..EH[ZNE], 100 Hz, int-valued floats
    one = base[0].copy().trim(base[0].stats.starttime, base[0].stats.starttime + 0.99)
    long = base[0].copy().trim(base[0].stats.starttime, base[0].stats.starttime + 20)
    gap = obspy.Stream(
        [
            long.slice(long.stats.starttime, long.stats.starttime + 5).copy(),
            long.slice(long.stats.starttime + 8, long.stats.starttime + 12).copy(),
        ]
    )
    out = {}
    for dtype, enc in (
        ("float32", "FLOAT32"),
        ("float64", "FLOAT64"),
        ("int32", "STEIM2"),
        ("int16", "INT16"),
    ):
        tr = one.copy()
        tr.data = tr.data.astype(dtype)
        out[dtype] = _bytes(obspy.Stream([tr]), encoding=enc)
    tr = long.copy()
    tr.data = tr.data.astype("int32")
    out["multi-record"] = _bytes(obspy.Stream([tr]), encoding="STEIM1", reclen=512)
    three = base.copy().trim(base[0].stats.starttime, base[0].stats.starttime + 0.99)
    for t in three:
        t.data = t.data.astype(np.float32)
    out["three channels"] = _bytes(three)
    for t in gap:
        t.data = t.data.astype(np.int32)
    out["gap"] = _bytes(gap, encoding="STEIM2", reclen=512)
    late = one.copy()
    late.data = late.data.astype(np.float32)
    late.stats.starttime += 0.123456
    out["sub-sample start"] = _bytes(obspy.Stream([late]))
    return out


@pytest.mark.parametrize("name", list(_packets()))
def test_libmseed_traces_equal_obspy(name: str) -> None:
    raw = _packets()[name]
    want = sorted(read_mseed_bytes(raw), key=lambda t: (t.id, t.stats.starttime))
    got = sorted(_read_libmseed(raw), key=lambda t: (t.id, t.stats.starttime))
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert g.id == w.id
        assert g.stats.starttime == w.stats.starttime
        assert g.stats.sampling_rate == w.stats.sampling_rate
        assert g.data.dtype == w.data.dtype
        np.testing.assert_array_equal(g.data, w.data)
    assert [t.id for t in decode_packet(raw)] == [t.id for t in got]


@pytest.mark.parametrize("raw", [b"\x00" * 600, b"X" * 4096, _bytes(obspy.read()[:1])[:300]])
def test_corrupt_packets_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedPacket, match="miniSEED"):
        decode_packet(raw)
