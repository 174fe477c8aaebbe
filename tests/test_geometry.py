from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sine_seisbench.example import make_inventory, station_positions
from sine_seisbench.geometry import (
    Coordinates,
    StationTable,
    compact_groups,
    project,
    unproject,
)


def grid(n_side: int):
    names, coords = [], []
    for i in range(n_side):
        for j in range(n_side):
            names.append(f"XX.G{i}{j}.")
            coords.append(Coordinates(35.0 + 0.1 * i, -117.0 + 0.12 * j, 500.0))
    return names, coords


def test_station_table_from_inventory_and_dataframe():
    pos = station_positions(3)
    inv = make_inventory(["A", "B", "C"], pos)
    table = StationTable.from_any(inv)
    c = table.get("XX.B.")
    assert (c.latitude, c.longitude, c.elevation) == pytest.approx(pos[1])
    assert table.get("XX.Q.") is None
    df = pd.DataFrame(
        [
            dict(network="XX", station=s, latitude=p[0], longitude=p[1], elevation=p[2])
            for s, p in zip("ABC", pos, strict=False)
        ]
    )
    assert StationTable.from_any(df).get("XX.C.00") == Coordinates(
        *pos[2]
    )  # no location column: any location
    with pytest.raises(ValueError, match="elevation"):
        StationTable.from_any(df.drop(columns="elevation"))
    with pytest.raises(TypeError):
        StationTable.from_any({"XX.A.": (1, 2, 3)})


def test_projection_round_trip():
    east, north = project(np.array([35.5]), np.array([-116.8]), 35.0, -117.0)
    assert north[0] == pytest.approx(55.6, abs=0.1)
    lat, lon = unproject(east[0], north[0], 35.0, -117.0)
    assert (lat, lon) == pytest.approx((35.5, -116.8))


@pytest.mark.parametrize("max_stations", [4, 8, 16])
def test_compact_groups_cover_every_station_with_its_neighbours(max_stations):
    names, coords = grid(7)  # 49 stations
    groups = compact_groups(names, coords, max_stations)
    assert all(len(g) <= max_stations for g in groups)
    assert set().union(*groups) == set(names)
    assert len(groups) < len(names)  # not one group per station
    xy = np.array([[c.longitude * 0.82, c.latitude] for c in coords])
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    k = max_stations // 2
    for i, name in enumerate(names):
        # distance of the k-th nearest neighbour; some group holds the station and all stations closer than it
        kth = np.sort(dist[i])[k]
        closer = {names[j] for j in np.nonzero(dist[i] < kth - 1e-9)[0]}
        assert any(name in g and closer <= set(g) for g in groups), name
    # Groups are compact: far smaller than the network
    span = max(np.ptp([coords[names.index(s)].latitude for s in g]) for g in groups)
    assert span < 0.6


def test_compact_groups_do_not_depend_on_input_order():
    names, coords = grid(5)
    perm = np.random.default_rng(0).permutation(len(names))
    a = compact_groups(names, coords, 6)
    b = compact_groups([names[i] for i in perm], [coords[i] for i in perm], 6)
    assert a == b
    assert compact_groups(names[:5], coords[:5], 6) == [sorted(names[:5])]
