"""The fast paths of the event step against the slower references they replaced: the bilinear travel-time
look-up against scipy's ``RegularGridInterpolator`` (the former implementation), and the migration's best node
and origin time (numpy) against :func:`~sine_seisbench.pipeline.locate.coalescence` (torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.interpolate import RegularGridInterpolator

from sine_seisbench.pipeline import locate
from sine_seisbench.pipeline.locate import LocatorConfig, coalescence, migrate
from sine_seisbench.traveltimes import TravelTimes


def reference_times(tt: TravelTimes, distance_km, depth_km, phase: str) -> np.ndarray:
    """``TravelTimes.times`` as it was before the fast look-up: scipy's interpolator on the clipped points."""
    key = "ts" if phase == "S" else "tp"
    interp = RegularGridInterpolator((tt.depths, tt.distances), tt._tables[key])
    d = np.asarray(distance_km, dtype=float)
    z = np.clip(np.asarray(depth_km, dtype=float) + tt.datum_km, 0.0, tt.max_depth_km)
    d, z = np.broadcast_arrays(d, z)
    values = interp(np.stack([z, np.clip(d, 0.0, tt.max_distance_km)], axis=-1))
    beyond = np.maximum(d - tt.max_distance_km, 0.0)
    zi = np.clip(np.round(z / tt.depth_step_km).astype(int), 0, len(tt.depths) - 1)
    return values + beyond * tt._far_slope[key][zi]


def edge_points(tt: TravelTimes) -> tuple[np.ndarray, np.ndarray]:
    """Distances and depths on and around the grid: nodes, cell edges, 0, the table's ends, beyond both ends."""
    d_nodes, z_nodes = tt.distances, tt.depths - tt.datum_km
    d = np.concatenate(
        [d_nodes, d_nodes[1:] - 1e-12, [-5.0, -1e-9, 0.0, tt.max_distance_km, 1e3, 1e-300]]
    )
    z = np.concatenate(
        [z_nodes, z_nodes[1:] - 1e-12, [-50.0, -tt.datum_km, tt.max_depth_km, 99.0, 0.0]]
    )
    return np.meshgrid(d, z, indexing="ij")


@pytest.mark.parametrize("phase", ["P", "S"])
def test_times_match_scipy_on_random_and_edge_points(tt, phase):
    rng = np.random.default_rng(1)
    d = rng.uniform(-10.0, tt.max_distance_km * 1.5, 20_000)
    z = rng.uniform(-5.0, tt.max_depth_km + 5.0, 20_000)
    assert np.max(np.abs(tt.times(d, z, phase) - reference_times(tt, d, z, phase))) < 1e-9
    de, ze = edge_points(tt)
    fast = tt.times(de, ze, phase)
    assert fast.shape == de.shape
    assert np.max(np.abs(fast - reference_times(tt, de, ze, phase))) < 1e-9
    # at the nodes, the table's own values (exactly up to rounding)
    key = "ts" if phase == "S" else "tp"
    nodes = tt.times(tt.distances[None, :], tt.depths[:, None] - tt.datum_km, phase)
    assert np.max(np.abs(nodes - tt._tables[key])) < 1e-12


def test_times_broadcast_like_the_reference(tt):
    d = np.linspace(0.0, 150.0, 7)[:, None, None] * np.ones((1, 1, 5))  # (7, 1, 5)
    z = np.linspace(0.0, 20.0, 3)[None, :, None]  # (1, 3, 1)
    for phase in ("P", "S"):
        fast = tt.times(d, z, phase)
        assert fast.shape == (7, 3, 5)
        assert np.max(np.abs(fast - reference_times(tt, d, z, phase))) < 1e-9
    p, s = tt.times_ps(d, z)
    assert np.array_equal(p, tt.times(d, z, "P")) and np.array_equal(s, tt.times(d, z, "S"))
    # scalars in, one-element arrays out, as from scipy
    one = tt.times(12.0, 3.0, "P")
    assert one.shape == (1,) == reference_times(tt, 12.0, 3.0, "P").shape
    assert one[0] == pytest.approx(reference_times(tt, 12.0, 3.0, "P")[0], abs=1e-9)
    assert tt(np.array(12.0), 3.0)["tp"].shape == (1,)


def test_all_fields_match_scipy(tt):
    d = np.concatenate([np.linspace(-3.0, tt.max_distance_km + 3.0, 301), tt.distances])
    for depth in (-1.0, 0.0, 4.4, tt.max_depth_km, 50.0):
        fields = tt(d, depth)
        z = min(max(depth + tt.datum_km, 0.0), tt.max_depth_km)
        pts = np.stack([np.full_like(d, z), np.clip(d, 0, tt.max_distance_km)], axis=-1)
        for key, values in fields.items():
            ref = RegularGridInterpolator((tt.depths, tt.distances), tt._tables[key])(pts)
            assert np.max(np.abs(values - ref)) < 1e-9, key


def test_nan_is_refused_like_scipy(tt):
    with pytest.raises(ValueError):
        reference_times(tt, np.array([np.nan]), 1.0, "P")
    with pytest.raises(ValueError, match="NaN"):
        tt.times(np.array([np.nan, 1.0]), 1.0, "P")
    with pytest.raises(ValueError, match="NaN"):
        tt.times(np.array([1.0]), np.nan, "S")


def reference_best(curves, tp, ts, origins, weights, dt, group=1, hint=None) -> tuple[int, int, float]:
    """The migration's search as it was: torch coalescence over chunks of nodes, first maximum (``group``, the
    bounded search's node groups and hint, change nothing)."""
    best = (-1.0, 0, 0)
    chunk = 37  # any chunking gives the first maximum in node-major order
    for start in range(0, tp.shape[0], chunk):
        c = coalescence(
            curves,
            torch.from_numpy(tp[start : start + chunk]),
            torch.from_numpy(ts[start : start + chunk]),
            origins,
            weights,
            dt,
        )
        value, flat = c.reshape(-1).max(0)
        if float(value) > best[0]:
            i, j = divmod(int(flat), c.shape[1])
            best = (float(value), start + i, j)
    return best[1], best[2], best[0]


@pytest.mark.parametrize("group", [1, 5])
@pytest.mark.parametrize("n_st, kind", [(1, "random"), (5, "random"), (16, "random"), (6, "ties"), (12, "peaks")])
def test_best_node_time_is_the_coalescence_maximum(n_st, kind, group):
    """The bounded search, its dense reference and torch's coalescence: the same node, origin and value (ties:
    the first in node-major order)."""
    rng = np.random.default_rng(n_st)
    dt, n_samples, n_nodes = 0.1, 300, 250
    if kind == "ties":  # flat curves: many nodes and origin times share the maximum
        curves = torch.zeros(n_st, 2, n_samples)
        curves[:, :, 100:200] = 0.5
    elif kind == "peaks":  # sparse peaks as from the picker: most blocks are pruned
        t = np.arange(n_samples)
        centres = rng.uniform(20, 280, (n_st, 2, 3))
        peaks = np.exp(-0.5 * ((t - centres[..., None]) / 3.0) ** 2).max(axis=2)
        curves = torch.from_numpy((peaks + 0.01 * rng.random(peaks.shape)).astype(np.float32))
    else:
        curves = torch.from_numpy(rng.random((n_st, 2, n_samples)).astype(np.float32))
    tp = rng.uniform(0.0, 20.0, (n_nodes, n_st)).astype(np.float32)
    ts = (tp * 1.73).astype(np.float32)
    origins = torch.arange(-12.3, 9.0, dt, dtype=torch.float32)
    weights = torch.from_numpy(rng.uniform(0.2, 1.0, (n_st, 2)).astype(np.float32))
    weights[0] = 0.0  # a station without data
    with torch.no_grad():
        expected = reference_best(curves, tp, ts, origins, weights, dt)
    assert locate._best_node_time_dense(curves, tp, ts, origins, weights, dt) == expected
    assert locate._best_node_time(curves, tp, ts, origins, weights, dt, group) == expected


def test_bounded_search_prunes_and_matches_on_an_event(tt, monkeypatch):
    """On the curves of an event (clean peaks at the predicted arrivals plus noise peaks) the bounded search sums
    few node blocks and finds the dense search's node, origin and value, also when curves are not finite."""
    positions = np.array(
        [[30 * math.cos(a), 30 * math.sin(a), 0.4] for a in np.linspace(0, 6.0, 11)]
        + [[0.0, 0.0, 0.5]]
    )
    east, north = np.linspace(-40, 40, 21), np.linspace(-40, 40, 21)
    ge, gn = np.meshgrid(east, north, indexing="ij")
    depth = np.linspace(0.0, 24.0, 9)
    tp, ts = locate._node_grid_times(
        tt, positions, ge.ravel(), gn.ravel(), depth, np.zeros((len(positions), 2))
    )
    true = 21 * 9 * 12 + 9 * 7 + 4  # some node
    rng = np.random.default_rng(3)
    dt, n = 0.05, 1200
    t = np.arange(n) * dt
    arrivals = np.stack([tp[true], ts[true]], axis=-1) + 8.0
    curves = np.exp(-0.5 * ((t - arrivals[..., None]) / 0.15) ** 2)
    curves += 0.6 * np.exp(-0.5 * ((t - rng.uniform(0, 60, (len(positions), 2, 1))) / 0.15) ** 2)
    curves = torch.from_numpy(curves.astype(np.float32))
    origins = torch.arange(-20.0, 50.0, dt, dtype=torch.float32)
    weights = torch.from_numpy(rng.uniform(0.5, 1.0, (len(positions), 2)).astype(np.float32))
    args = (curves, tp.astype(np.float32), ts.astype(np.float32), origins, weights, dt)
    expected = locate._best_node_time_dense(*args)
    summed = []
    exact_sums = np.zeros

    def counting_zeros(shape, *a, **k):
        if isinstance(shape, tuple) and len(shape) == 2 and shape[1] == locate._BOUND_BLOCK:
            summed.append(shape[0])
        return exact_sums(shape, *a, **k)

    monkeypatch.setattr(locate.np, "zeros", counting_zeros)
    got = locate._best_node_time(*args, 9)
    monkeypatch.undo()
    assert got == expected and got[0] == true
    n_blocks = tp.shape[0] * -(-len(origins) // locate._BOUND_BLOCK)
    assert 0 < sum(summed) < 0.02 * n_blocks
    # a NaN sample: the dense path, the same answer as the reference
    curves[3, 1, 5] = float("nan")
    assert locate._best_node_time(*args, 9) == locate._best_node_time_dense(*args)


def test_migrate_unchanged_by_the_fast_search(tt, monkeypatch):
    """migrate with the numpy search and with the former torch search: the same node, origin and value."""
    positions = np.array(
        [[25 * math.cos(a), 25 * math.sin(a), 0.3] for a in np.linspace(0, 6.2, 7)]
        + [[0.0, 0.0, 0.5]]
    )
    x = np.array([6.0, -4.0, 9.0, 5.0])
    dist = np.hypot(x[0] - positions[:, 0], x[1] - positions[:, 1])
    arrivals = np.stack(
        [
            tt.times(dist, x[2], p) + tt.elevation_correction(positions[:, 2] * 1000, p)
            for p in ("P", "S")
        ],
        axis=-1,
    )
    t = np.arange(3001) / 100.0
    curves = np.exp(-0.5 * ((t[None, None] - (arrivals + x[3])[..., None]) / 0.1) ** 2)
    curves = curves.astype(np.float32)
    available = np.ones(len(positions), dtype=bool)
    available[2] = False
    config = LocatorConfig()
    first_p = float(np.min(arrivals[available, 0]) + x[3])
    weights = np.full((len(positions), 2), 0.7)
    fast = migrate(curves, 100.0, positions, available, tt, first_p, config, None, weights)
    monkeypatch.setattr(locate, "_best_node_time", reference_best)
    slow = migrate(curves, 100.0, positions, available, tt, first_p, config, None, weights)
    assert fast == slow
    assert math.hypot(fast[0] - x[0], fast[1] - x[1]) < 3.0


def test_grid_times_equal_times_ps_broadcast(tt):
    """The event step's grid look-up (one depth at a time): the same values as times_ps on the broadcast grid,
    beyond the table's distances and outside its depths too."""
    rng = np.random.default_rng(5)
    dist = rng.uniform(0.0, 1.4 * tt.max_distance_km, (60, 9))
    dist[0, 0], dist[1, 1] = 0.0, tt.max_distance_km
    depth = np.concatenate([rng.uniform(-3.0, tt.max_depth_km + 5.0, 7), [-tt.datum_km, 0.0]])
    expected = tt.times_ps(dist[:, None, :], depth[None, :, None])
    got = tt.grid_times_ps(dist, depth)
    assert all(g.shape == (60, 9, 9) for g in got)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    near = tt.grid_times_ps(dist[:, :3] * 0.1, depth)  # inside the table: no far-distance term
    assert np.array_equal(near[1], tt.times_ps(dist[:, None, :3] * 0.1, depth[None, :, None])[1])
    with pytest.raises(ValueError, match="NaN"):
        tt.grid_times_ps(np.full((2, 2), np.nan), depth)


def test_phase_times_select_the_phase_of_times_ps(tt):
    """The fit's look-up of each arrival's own phase: the values of times_ps, selected, also beyond the table;
    NaN refused."""
    rng = np.random.default_rng(6)
    d = rng.uniform(0.0, 1.3 * tt.max_distance_km, (5, 40))
    z = rng.uniform(-3.0, tt.max_depth_km + 4.0, (5, 1))
    is_s = rng.random(40) < 0.5
    tp, ts = tt.times_ps(d, z)
    assert np.array_equal(tt.phase_times(d, z, is_s), np.where(is_s, ts, tp))
    near = d * 0.1
    tp, ts = tt.times_ps(near, z)
    assert np.array_equal(tt.phase_times(near, z, is_s), np.where(is_s, ts, tp))
    with pytest.raises(ValueError, match="NaN"):
        tt.phase_times(np.array([[1.0, np.nan]]), z[:1], is_s[:2])
    with pytest.raises(ValueError, match="NaN"):
        tt.phase_times(d, np.full((5, 1), np.nan), is_s)


def test_bounded_search_on_many_small_random_grids():
    """Random small grids, groups, weights and sparse curves with peaks up to their very last samples (where the
    bounds' longest ranges end): the bounded search always finds the dense search's node, origin and value."""
    rng = np.random.default_rng(11)
    for case in range(150):
        n_st, group = int(rng.integers(1, 7)), int(rng.integers(1, 6))
        n_nodes, n_samples, dt = group * int(rng.integers(3, 30)), int(rng.integers(40, 160)), 0.1
        curves = np.zeros((n_st, 2, n_samples), dtype=np.float32)
        for _ in range(int(rng.integers(1, 6))):  # sparse peaks, some at the end
            s, k = rng.integers(0, n_st), rng.integers(0, 2)
            at = n_samples - 1 - int(rng.integers(0, 4)) if rng.random() < 0.5 else rng.integers(0, n_samples)
            curves[s, k, max(at - 2, 0) : at + 1] = rng.uniform(0.2, 1.0)
        tp = rng.uniform(0.0, 0.6 * n_samples * dt, (n_nodes, n_st)).astype(np.float32)
        ts = (tp * rng.uniform(1.5, 1.9)).astype(np.float32)
        origins = torch.arange(-float(rng.uniform(0, 5)), float(rng.uniform(2, 9)), dt, dtype=torch.float32)
        weights = torch.from_numpy(rng.uniform(0.0, 1.0, (n_st, 2)).astype(np.float32))
        args = (torch.from_numpy(curves), tp, ts, origins, weights, dt)
        assert locate._best_node_time(*args, group) == locate._best_node_time_dense(*args), case
