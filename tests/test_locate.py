"""The event step (sine_seisbench.pipeline.locate) and the travel-time tables it uses, on synthetic inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sine_seisbench import traveltimes as tt_module
from sine_seisbench.pipeline.locate import (
    ArrivalEstimate,
    LocatorConfig,
    coalescence,
    estimate_station_corrections,
    fit_hypocentre,
    local_magnitude,
    locate_window,
    ml_from_amplitude,
    prepare_curves,
    read_station_corrections,
)
from sine_seisbench.traveltimes import TravelTimes

RATE = 100.0
#: 8 stations on a 25 km ring and one in the middle (east, north, up km)
POSITIONS = np.array(
    [
        [25 * math.cos(a), 25 * math.sin(a), 0.3]
        for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)
    ]
    + [[0.0, 0.0, 0.5]]
)
STATIONS = [f"XX.S{i:02d}." for i in range(len(POSITIONS))]
TRUE = np.array([6.0, -4.0, 9.0, 5.0])  # east, north, depth km, origin s after the window start


def arrival_times(tt: TravelTimes, x: np.ndarray) -> np.ndarray:
    """Exact P and S arrival times (stations, 2) from hypocentre ``x`` (s after the window start)."""
    dist = np.hypot(x[0] - POSITIONS[:, 0], x[1] - POSITIONS[:, 1])
    elev = POSITIONS[:, 2] * 1000
    tp = tt.times(dist, x[2], "P") + tt.elevation_correction(elev, "P")
    ts = tt.times(dist, x[2], "S") + tt.elevation_correction(elev, "S")
    return np.stack([tp, ts], axis=-1) + x[3]


def curves_for(
    times: np.ndarray, n: int = 3001, width_s: float = 0.1, phases=("P", "S")
) -> np.ndarray:
    """Gaussian probability curves (stations, 2, samples) peaking at ``times``; a phase left out is zero."""
    t = np.arange(n) / RATE
    out = np.zeros((times.shape[0], 2, n), dtype=np.float32)
    for k, phase in enumerate(("P", "S")):
        if phase in phases:
            out[:, k] = np.exp(-0.5 * ((t[None, :] - times[:, k : k + 1]) / width_s) ** 2)
    return out


def test_layered_table_file_is_built_once_and_cached(tmp_path, monkeypatch):
    model = tmp_path / "model.txt"
    model.write_text("Depth,Vp,Vs\n-1.0,3.0,1.7\n2.0,5.8,3.3\n15.0,6.5,3.7\n30.0,8.0,4.5\n")
    kwargs = dict(
        velocity_model=model,
        max_distance_km=60,
        max_depth_km=20,
        distance_step_km=5,
        depth_step_km=2,
        cache_dir=tmp_path / "cache",
    )
    tt = TravelTimes(**kwargs)
    assert tt.datum_km == pytest.approx(1.0) and tt.surface_vp == 3.0
    # a source 1 km below sea level under a station at sea level: 2 km of 3 km/s from the model top, minus the
    # 1 km from the top down to the station
    t = tt.times(np.array([0.0]), 1.0, "P")[0] + tt.elevation_correction(np.array([0.0]), "P")[0]
    assert t == pytest.approx(1.0 / 3.0, abs=0.02)
    # beyond the table, times grow with its last slope (here the upper crust's 5.8 km/s)
    far = tt.times(np.array([55.0, 60.0, 80.0]), 5.0, "P")
    assert (far[2] - far[1]) / 20.0 == pytest.approx((far[1] - far[0]) / 5.0, rel=0.01)
    assert 5.0 / (far[1] - far[0]) == pytest.approx(5.8, rel=0.03)
    # torch and numpy agree (bilinear)
    d = np.array([3.0, 17.5, 42.0])
    z = np.array([0.5, 7.0, 13.0])
    t_np = tt.times(d, z, "S")
    t_torch = tt.torch_times(
        torch.tensor(d, dtype=torch.float32), torch.tensor(z, dtype=torch.float32), "S"
    )
    assert np.allclose(t_torch.numpy(), t_np, atol=1e-3)
    # a second table of the same model and grid is read from the cache, never rebuilt
    monkeypatch.setattr(tt_module, "_build", lambda *a, **k: pytest.fail("table rebuilt"))
    again = TravelTimes(**kwargs)
    assert np.array_equal(again.times(d, z, "P"), tt.times(d, z, "P"))


def test_bad_velocity_models_are_named(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("depth vp vs\n0 5.0 6.0\n")
    with pytest.raises(ValueError, match="bad.txt.*vs < vp"):
        TravelTimes(velocity_model=bad, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        TravelTimes(velocity_model=tmp_path / "missing.txt", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="depths must increase"):
        TravelTimes(velocity_model=[(0, 5.0, 3.0), (0, 6.0, 3.5)], cache_dir=tmp_path)


def test_robust_fit_recovers_the_hypocentre_despite_an_outlier(tt):
    times = arrival_times(tt, TRUE)
    arrivals = [
        ArrivalEstimate(s, phase, float(times[i, k]), 0.02, 0.9)
        for i, s in enumerate(STATIONS)
        for k, phase in enumerate(("P", "S"))
    ]
    arrivals[4].time += 1.5  # one P pick 1.5 s late (a wrong phase)
    positions = {s: POSITIONS[i] for i, s in enumerate(STATIONS)}
    config = LocatorConfig()
    x, cov, _ = fit_hypocentre(arrivals, positions, tt, (0.0, 0.0, 5.0, 3.0), config)
    assert math.hypot(x[0] - TRUE[0], x[1] - TRUE[1]) < 0.3
    assert abs(x[2] - TRUE[2]) < 1.0 and abs(x[3] - TRUE[3]) < 0.1
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    assert arrivals[4].residual == pytest.approx(1.5, abs=0.2)  # the outlier keeps its residual
    assert abs(arrivals[0].residual) < 0.1
    # without S and with three stations the depth is less certain than with all
    few = [a for a in arrivals if a.phase == "P" and a.station in STATIONS[:4]] + [arrivals[1]]
    _, cov_few, _ = fit_hypocentre(few, positions, tt, (0.0, 0.0, 5.0, 3.0), config)
    assert cov_few[2, 2] > cov[2, 2]


def test_locate_window_on_clean_curves_and_the_acceptance_rule(tt):
    times = arrival_times(tt, TRUE)
    curves = curves_for(times)
    window = np.zeros((len(STATIONS), 3, 3001), dtype=np.float32)
    window[:, :, :] = np.random.default_rng(0).normal(0, 1, window.shape)
    available = np.ones(len(STATIONS), dtype=bool)
    first_p = float(times[:, 0].min())
    config = LocatorConfig()
    est = locate_window(curves, window, RATE, STATIONS, POSITIONS, available, first_p, tt, config)
    assert not isinstance(est, str), est
    assert math.hypot(est.east_km - TRUE[0], est.north_km - TRUE[1]) < 0.5
    assert abs(est.depth_km - TRUE[2]) < 1.5 and abs(est.origin_s - TRUE[3]) < 0.15
    assert est.n_p == len(STATIONS) and est.n_s == len(STATIONS)
    assert all(abs(a.residual) < 0.1 for a in est.arrivals)
    major, minor, azimuth = est.ellipse()
    assert 0 < minor <= major and 0 <= azimuth < 180
    # no gains: ML is not guessed
    assert math.isnan(est.magnitude) and est.flags[0].startswith("uncalibrated")
    # two stations with P: no event, and the reason says so
    only_two = curves.copy()
    only_two[2:, 0] = 0.0
    reason = locate_window(
        only_two, window, RATE, STATIONS, POSITIONS, available, first_p, tt, config
    )
    assert isinstance(reason, str) and "2 P" in reason and "min_p_stations=3" in reason
    # P only at 4 stations, no S: 4 phases < min_phases=5
    p_only = curves_for(times, phases=("P",))
    p_only[4:] = 0.0
    reason = locate_window(
        p_only, window, RATE, STATIONS, POSITIONS, available, first_p, tt, config
    )
    assert isinstance(reason, str) and "min_phases=5" in reason
    # that decision needs no migration: no curve reaches the threshold anywhere for a fifth phase
    assert "4 P and 0 S curves reach the thresholds anywhere in the window" in reason
    # an S curve reaching it far from any S arrival passes that bound; the rule near the located hypocentre
    # still rejects (the bound only skips candidates that cannot be accepted wherever they are)
    stray = p_only.copy()
    stray[0, 1] = curves_for(times + 8.0)[0, 1]
    reason = locate_window(stray, window, RATE, STATIONS, POSITIONS, available, first_p, tt, config)
    assert isinstance(reason, str) and "4 P and 0 S phases reach the thresholds near" in reason
    # NaN samples (blinded edges) do not hide a peak from the bound
    with_nan = curves.copy()
    with_nan[:, :, :50] = np.nan
    est_nan = locate_window(
        np.nan_to_num(with_nan), window, RATE, STATIONS, POSITIONS, available, first_p, tt, config
    )
    assert not isinstance(est_nan, str)
    assert not isinstance(
        locate_window(with_nan, window, RATE, STATIONS, POSITIONS, available, first_p, tt, config),
        str,
    )
    assert not isinstance(
        locate_window(
            p_only,
            window,
            RATE,
            STATIONS,
            POSITIONS,
            available,
            first_p,
            tt,
            LocatorConfig(min_phases=4),
        ),
        str,
    )


def test_a_fit_that_leaves_the_travel_time_table_is_no_event(tt, monkeypatch):
    """Seen on a 64-station virtual network: a Huber fit of 16 P arrivals ran off to 3e7 km (the search windows,
    3 % of the travel time wide, then took every peak as an arrival and accepted it; the latitude broke the
    bounds check). A fit ending farther from every station than the table reaches is rejected with the reason;
    a diverged second pass falls back to the first."""
    import sine_seisbench.pipeline.locate as locate_module

    times = arrival_times(tt, TRUE)
    curves = curves_for(times)
    window = np.zeros((len(STATIONS), 3, 3001), dtype=np.float32)
    available = np.ones(len(STATIONS), dtype=bool)
    first_p = float(times[:, 0].min())
    args = (curves, window, RATE, STATIONS, POSITIONS, available, first_p, tt, LocatorConfig())
    good = locate_window(*args)
    assert not isinstance(good, str)
    real_fit = locate_module.fit_hypocentre
    calls = []

    def diverging(arrivals, positions, tt_, start, config, corrections=None, after=0):
        x, cov, rms = real_fit(arrivals, positions, tt_, start, config, corrections)
        calls.append(start)
        if len(calls) > after:
            x = x + np.array([2.4e6, 3.3e7, 0.0, 0.0])
        return x, cov, rms

    monkeypatch.setattr(locate_module, "fit_hypocentre", diverging)
    reason = locate_window(*args)
    assert isinstance(reason, str) and "the travel-time fit diverged" in reason
    assert f"beyond the travel-time table ({tt.max_distance_km:g} km)" in reason
    calls.clear()
    monkeypatch.setattr(
        locate_module,
        "fit_hypocentre",
        lambda *a, **k: diverging(*a, **k, after=1),
    )
    second_diverged = locate_window(*args)
    assert not isinstance(second_diverged, str) and len(calls) == 2
    assert math.hypot(second_diverged.east_km - TRUE[0], second_diverged.north_km - TRUE[1]) < 1.0


def test_migration_is_differentiable_in_the_curves(tt):
    times = arrival_times(tt, TRUE)
    curves = torch.tensor(curves_for(times), requires_grad=True)
    config = LocatorConfig()
    pooled = prepare_curves(curves, RATE, config)
    tp = torch.tensor((times[:, 0] - TRUE[3])[None], dtype=torch.float32)
    ts = torch.tensor((times[:, 1] - TRUE[3])[None], dtype=torch.float32)
    origins = torch.tensor([TRUE[3], TRUE[3] + 3.0], dtype=torch.float32)
    value = coalescence(pooled, tp, ts, origins, torch.ones(len(STATIONS), 2), config.migration_dt)
    assert value[0, 0] > 1.9 and value[0, 1] < 0.1  # the true origin coalesces, 3 s later does not
    value[0, 0].backward()
    assert curves.grad is not None and curves.grad.abs().sum() > 0


def test_local_magnitude_from_responses_noise_and_clipping():
    rng = np.random.default_rng(1)
    n = 3000
    window = np.zeros((3, 3, n))
    for s in range(3):
        window[s] = rng.normal(0, 10.0, (3, n))  # noise in counts
        window[s, 1:, 1500:1700] += 2e4 * np.sin(
            np.arange(200) * 2 * np.pi * 3 / RATE
        )  # a 3 Hz burst
    stations = ["XX.A.", "XX.B.", "XX.C."]
    gains = {s: {0: (1e9, "M/S"), 1: (1e9, "M/S"), 2: (1e9, "M/S")} for s in stations}
    hypo = {s: 20.0 for s in stations}
    spans = {s: (1300, 2600) for s in stations}
    config = LocatorConfig()
    ml, spread, station_ml, flags = local_magnitude(
        window, RATE, stations, gains, hypo, spans, config
    )
    assert len(station_ml) == 3 and spread >= 0.1 and flags == []
    # 10x the sensitivity: 10x less ground motion, ML one unit lower; a station term adds to its ML
    tenfold = {s: {c: (v * 10, u) for c, (v, u) in g.items()} for s, g in gains.items()}
    ml10, _, st10, _ = local_magnitude(
        window, RATE, stations, tenfold, hypo, spans, config, station_terms={"XX.A.": 0.5}
    )
    assert ml10 == pytest.approx(ml - 1.0, abs=0.01)
    assert st10["XX.A."] == pytest.approx(station_ml["XX.A."] - 0.5, abs=0.01)
    # the same relation at another distance
    assert ml_from_amplitude(1.0, 100.0) == pytest.approx(3.0)
    # a station whose "signal" is only noise is left out
    quiet = window.copy()
    quiet[2, 1:, 1500:1700] = rng.normal(0, 10.0, (2, 200))
    _, _, st_q, _ = local_magnitude(quiet, RATE, stations, gains, hypo, spans, config)
    assert set(st_q) == {"XX.A.", "XX.B."}
    # flat tops: saturated
    clipped = window.copy()
    clipped[0] = np.clip(clipped[0], -1.5e4, 1.5e4)
    *_, flags = local_magnitude(clipped, RATE, stations, gains, hypo, spans, config)
    assert flags and flags[0].startswith("saturated: clipped records at XX.A.")
    # no responses: uncalibrated, no value
    ml_none, _, _, flags = local_magnitude(window, RATE, stations, {}, hypo, spans, config)
    assert math.isnan(ml_none) and flags[0].startswith("uncalibrated")


def test_station_corrections_from_located_events_and_back(tmp_path):
    """Corrections estimated from SINE's own events (a catalogue) are read back by classify."""
    from sine_seisbench import DEFAULT_WEIGHTS, SINE
    from sine_seisbench.example import network_stream

    model = SINE.from_pretrained(DEFAULT_WEIGHTS)
    stream, inv = network_stream(8, repeat=4)
    events = model.classify(stream, inventory=inv).events
    assert len(events) == 4
    path = tmp_path / "corrections.csv"
    frame = estimate_station_corrections(events, min_events=3, path=path)
    assert path.is_file() and set(frame["station"]) == {f"XX.S{i:02d}." for i in range(8)}
    assert frame["n_P"].min() >= 3 and frame["P"].notna().all()
    corrections = read_station_corrections(path)
    assert corrections["XX.S00."]["P"] == pytest.approx(
        frame.set_index("station").loc["XX.S00.", "P"]
    )
    again = model.classify(stream, inventory=inv, station_corrections=path).events
    assert len(again) == 4

    # with its own delays taken out, the P residuals shrink
    def rms(catalog):
        res = [
            a.time_residual
            for e in catalog
            for a in e.preferred_origin().arrivals
            if a.phase == "P"
        ]
        return float(np.sqrt(np.mean(np.square(res))))

    assert rms(again) < rms(events)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("sta,P\nA,1\n")
    with pytest.raises(ValueError, match="'station' column"):
        read_station_corrections(wrong)


def test_fit_jacobian_is_scipys_forward_differences_and_the_fit_scipys(tt, monkeypatch):
    """fit_hypocentre's solver gets a Jacobian that evaluates the point and its 4 steps in one look-up: scipy's
    own forward differences (diff_step=1e-4) at every point; the fit ends at scipy's ``least_squares`` solution
    (Huber loss, the same bounds and scales, scipy's own differences) to a metre and a tenth of a millisecond,
    its cost no higher, with about as many evaluations (fewer on the event step's fits)."""
    from scipy.optimize import _numdiff, least_squares

    from sine_seisbench.pipeline import locate

    times = arrival_times(tt, TRUE)
    rng = np.random.default_rng(2)
    arrivals = [
        ArrivalEstimate(s, phase, float(times[i, k] + rng.normal(0, 0.05)), 0.03, 0.8)
        for i, s in enumerate(STATIONS)
        for k, phase in enumerate(("P", "S"))
    ]
    positions = {s: POSITIONS[i] for i, s in enumerate(STATIONS)}
    config = LocatorConfig()
    real = locate.huber_least_squares
    seen = []

    def recording(evaluate, x0, lower, upper, **kwargs):
        result = real(evaluate, x0, lower, upper, **kwargs)
        seen.append((evaluate, x0, lower, upper, kwargs, result))
        return result

    monkeypatch.setattr(locate, "huber_least_squares", recording)
    # starts near the surface bound (a step reversed there) and at zero (the absolute step)
    for start in [(0.0, 0.0, 5.0, 3.0), (6.0, -4.0, -0.499999, 5.0), (-3.0, 2.0, 29.99, 0.0)]:
        x, _, _ = fit_hypocentre(list(arrivals), positions, tt, start, config)
        evaluate, x0, lower, upper, kwargs, result = seen[-1]
        assert np.array_equal(x, result.x)

        def fun(point, evaluate=evaluate):
            return evaluate(point)[0]

        for point in (np.array(start, dtype=float), x, x + [0.3, -0.2, 0.0, 0.01]):
            point[2] = min(max(point[2], lower[2]), upper[2])
            expected = _numdiff.approx_derivative(
                fun, point, method="2-point", rel_step=1e-4, bounds=(lower, upper)
            )
            assert np.array_equal(evaluate(point)[1], expected)
        ref = least_squares(
            fun,
            x0,
            diff_step=1e-4,
            loss="huber",
            f_scale=kwargs["f_scale"],
            bounds=(lower, upper),
            x_scale=kwargs["x_scale"],
        )
        assert np.allclose(x[:3], ref.x[:3], rtol=0, atol=1e-3) and abs(x[3] - ref.x[3]) < 1e-4
        assert result.cost <= ref.cost * (1 + 1e-8)
        assert result.nfev <= 1.25 * ref.nfev + 2


def test_migration_grid_cache_returns_the_computed_grid_and_stays_bounded(tt, monkeypatch):
    """The coarse grid of a station group is computed once and reused (the same values, read-only); another
    set of stations with data is another grid; the cache drops the least recently used beyond its budget."""
    from sine_seisbench.pipeline import locate

    monkeypatch.setattr(locate, "_GRID_CACHE", type(locate._GRID_CACHE)())
    corrections = np.zeros((len(POSITIONS), 2))
    shape = (0.0, 0.0, 40.0, -0.5, 30.0, 11, 21)
    available = np.ones(len(POSITIONS), dtype=bool)
    fresh = locate._search_grid(tt, POSITIONS, available, corrections, shape, False)
    first = locate._search_grid(tt, POSITIONS, available, corrections, shape, True)
    again = locate._search_grid(tt, POSITIONS, available, corrections, shape, True)
    assert all(a is b for a, b in zip(first, again, strict=True))  # reused
    for a, b in zip(fresh[:5], first[:5], strict=True):
        assert np.array_equal(a, b) and not b.flags.writeable
    assert fresh[5] == first[5]
    assert first[3].shape == (21 * 21 * 11, len(POSITIONS)) and first[3].dtype == np.float32
    # one station without data: another grid (its longest P travel time leaves that station out)
    fewer = available.copy()
    fewer[0] = False
    other = locate._search_grid(tt, POSITIONS, fewer, corrections, shape, True)
    assert other[3] is not first[3] and other[5] <= first[5]
    assert len(locate._GRID_CACHE) == 2
    # a budget of one grid keeps only the last one used
    monkeypatch.setattr(locate, "_GRID_CACHE_BYTES", 1)
    locate._search_grid(tt, POSITIONS, available, corrections, (1.0,) + shape[1:], True)
    assert len(locate._GRID_CACHE) == 1


def _soft_arrivals_one_by_one(curves, rate, stations, available, predicted, origin_s, config, sigma=None):
    """The rule of soft_arrivals written out station by station and phase by phase (its reference)."""
    out, counts = [], [0, 0]
    n, half = curves.shape[-1], int(round(0.4 * rate))
    clean = np.nan_to_num(curves.astype(float))
    for s, station in enumerate(stations):
        if not available[s]:
            continue
        for k, phase in enumerate("PS"):
            w = 0.3 + 0.03 * abs(predicted[s, k] - origin_s)
            lo = max(math.floor((predicted[s, k] - w) * rate), 0)
            hi = min(math.ceil((predicted[s, k] + w) * rate) + 1, n)
            if hi - lo < 3:
                continue
            seg = clean[s, k, lo:hi]
            i = int(np.argmax(seg))
            peak = float(seg[i])
            counts[k] += peak >= (config.p_threshold, config.s_threshold)[k]
            if peak < config.soft_floor:
                continue
            a, b = max(lo + i - half, 0), min(lo + i + half + 1, n)
            p2 = clean[s, k, a:b] ** 2
            t = np.arange(a, b) / rate
            mean = float(np.sum(t * p2) / np.sum(p2))
            spread = max(float(np.sqrt(np.sum((t - mean) ** 2 * p2) / np.sum(p2))), 1.0 / rate)
            if sigma is not None:
                spread = math.hypot(spread, float(sigma[s, k]))
            out.append(ArrivalEstimate(station, phase, mean, spread, peak))
    return out, counts[0], counts[1]


@pytest.mark.parametrize("case", ["clean", "nan_and_edges", "sigma"])
def test_soft_arrivals_are_the_station_by_station_rule(tt, case):
    """All stations and phases at once give the same arrivals, to the last bit, and the same counts as the rule
    applied one station and phase at a time: also with NaN in a curve, a station without data, a flat curve,
    arrivals predicted at the window's first and last samples, plateaus (the first peak) and network sigmas."""
    from sine_seisbench.pipeline.locate import soft_arrivals

    times = arrival_times(tt, TRUE)
    rng = np.random.default_rng(5)
    curves = curves_for(times + rng.normal(0, 0.05, times.shape)) * rng.uniform(0.05, 1.0, (9, 2, 1))
    curves = curves.astype(np.float32)
    available = np.ones(len(STATIONS), dtype=bool)
    predicted = times.copy()
    sigma = None
    if case == "nan_and_edges":
        curves[0, 0, 100:200] = np.nan
        curves[1, 1] = 0.0
        curves[2, 0, 400:420] = curves[2, 0].max()  # a plateau
        available[3] = False
        predicted[4, 0] = 0.01
        predicted[5, 1] = (curves.shape[-1] - 2) / RATE
    if case == "sigma":
        sigma = rng.uniform(0.0, 0.3, (len(STATIONS), 2))
    config = LocatorConfig()
    got = soft_arrivals(curves, RATE, STATIONS, available, predicted, TRUE[3], config, sigma)
    want = _soft_arrivals_one_by_one(curves, RATE, STATIONS, available, predicted, TRUE[3], config, sigma)
    assert got == want
    assert len(got[0]) >= 10


@pytest.mark.parametrize("n", [1, 2, 5, 11, 600, 601, 3001])
def test_numpy_max_pool_is_torchs(n):
    """The event step pools its curves in numpy (:func:`max_pool`): the values and shapes of torch's
    ``max_pool1d`` with ``ceil_mode``, for the pools it uses (to ``migration_dt``, the peak widening, the coarse
    search's halving) and others; ``prepare_curves`` gives the same with and without gradients."""
    from sine_seisbench.pipeline.locate import LocatorConfig, max_pool, prepare_curves

    rng = np.random.default_rng(n)
    x = rng.random((3, 2, n)).astype(np.float32)
    x[0, 0, n // 2] = np.nan  # propagated as torch does
    for size, stride, padding in [(5, 5, 0), (2, 2, 0), (3, 3, 0), (5, 1, 2), (7, 1, 3), (4, 2, 1)]:
        want = torch.nn.functional.max_pool1d(
            torch.from_numpy(x), size, stride, padding=padding, ceil_mode=True
        ).numpy()
        got = max_pool(x, size, stride, padding)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    curves = torch.from_numpy(np.nan_to_num(x))
    config = LocatorConfig()
    with torch.no_grad():
        plain = prepare_curves(curves, 100.0, config)
    graded = prepare_curves(curves.clone().requires_grad_(True), 100.0, config)
    assert graded.requires_grad
    np.testing.assert_array_equal(plain.numpy(), graded.detach().numpy())
