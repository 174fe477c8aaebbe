"""Joint training of the pick curves and the event step: the location loss, the arrival head and its use in
the event step."""

from __future__ import annotations

import math

import numpy as np
import torch
from test_locate import POSITIONS, RATE, STATIONS, TRUE, arrival_times, curves_for

from sine_seisbench import SINE
from sine_seisbench.pipeline.locate import LocatorConfig, locate_window
from sine_seisbench.train import location_loss


def _labels(arrivals: np.ndarray, n: int = 600, sigma: float = 20.0) -> torch.Tensor:
    """(1, S, 3, n) probabilistic P/S/N labels peaking at sample ``arrivals`` (S, 2)."""
    t = np.arange(n)
    y = np.zeros((1, arrivals.shape[0], 3, n), dtype=np.float32)
    for k in range(2):
        y[0, :, k] = np.exp(-0.5 * ((t[None] - arrivals[:, k : k + 1]) / sigma) ** 2)
    y[0, :, 2] = np.clip(1 - y[0, :, 0] - y[0, :, 1], 0, 1)
    return torch.as_tensor(y)


def _logits(peaks: np.ndarray, n: int = 600, width: float = 8.0) -> torch.Tensor:
    """(1, S, 3, n) logits whose P/S probabilities peak near 1 at sample ``peaks`` (S, 2)."""
    t = torch.arange(n, dtype=torch.float32)
    logits = torch.zeros(1, peaks.shape[0], 3, n)
    for k in range(2):
        centre = torch.as_tensor(peaks[:, k : k + 1], dtype=torch.float32)
        logits[0, :, k] = 8.0 * torch.exp(-0.5 * ((t[None] - centre) / width) ** 2) - 4.0
    return logits


def test_location_loss_ignores_the_origin_time_and_grows_with_a_late_station():
    arrivals = np.array([[100, 180], [150, 260], [200, 330], [250, 410]], dtype=float)
    y = _labels(arrivals)
    weight = torch.ones(1, 4)
    exact = location_loss(_logits(arrivals), y, weight, RATE)
    # every curve 0.15 s late: the origin time absorbs it
    shifted = location_loss(_logits(arrivals + 15), y, weight, RATE)
    assert (
        abs(float(shifted) - float(exact)) < 0.02
    )  # (only the curves' cut at the window edge differs)
    # one station 0.2 s late: a misfit no origin time explains
    late = arrivals.copy()
    late[2] += 20
    assert float(location_loss(_logits(late), y, weight, RATE)) > float(exact) + 0.5
    # a station whose labels are not true does not count
    weight_masked = weight.clone()
    weight_masked[0, 2] = 0
    masked = location_loss(_logits(late), y, weight_masked, RATE)
    assert abs(float(masked) - float(exact)) < 0.05


def test_location_loss_flows_into_the_curves_and_the_arrival_sigma():
    arrivals = np.array([[100, 180], [150, 260], [200, 330], [250, 410]], dtype=float)
    late = arrivals.copy()
    late[1] += 25
    logits = _logits(late).requires_grad_(True)
    sigma = torch.full((1, 4, 2), 0.05, requires_grad=True)
    loss = location_loss(logits, _labels(arrivals), torch.ones(1, 4), RATE, sigma)
    loss.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    # the late station asks for a larger timing error, the others for a smaller one
    assert float(sigma.grad[0, 1].sum()) < 0 < float(sigma.grad[0, 0].sum())


def test_arrival_head_outputs_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = SINE(max_stations=4, arrival_head=True)
    x = torch.randn(2, 4, 3, 3001)
    x[1, 3] = 0  # a padded station
    positions = torch.randn(2, 4, 3)
    out = model(x, positions=positions)
    sigma = out["arrival_sigma"]
    assert sigma.shape == (2, 4, 2)
    assert torch.isfinite(sigma[0]).all() and (sigma[0] >= 0.01).all()
    assert torch.isnan(sigma[1, 3]).all()
    model.save(tmp_path / "m")
    loaded = SINE.load(tmp_path / "m")
    assert loaded.arrival_head is not None
    loaded.eval(), model.eval()
    with torch.no_grad():
        a = model(x, positions=positions)["arrival_sigma"]
        b = loaded(x, positions=positions)["arrival_sigma"]
    torch.testing.assert_close(a, b, equal_nan=True)
    assert SINE(max_stations=4).get_model_args()["arrival_head"] is False


def test_event_step_follows_the_arrival_weights(tt):
    """A station whose P and S curves are 0.6 s late pulls the location; told by the arrival head that its timing
    is poor (1 s), the event step weights it down and lands closer to the truth."""
    times = arrival_times(tt, TRUE)
    bad = times.copy()
    bad[0] += 0.6
    bad[1] += 0.6
    curves = curves_for(bad)
    window = np.random.default_rng(0).normal(0, 1, (len(STATIONS), 3, 3001)).astype(np.float32)
    available = np.ones(len(STATIONS), dtype=bool)
    first_p = float(bad[:, 0].min())
    config = LocatorConfig()
    plain = locate_window(curves, window, RATE, STATIONS, POSITIONS, available, first_p, tt, config)
    sigma = np.full((len(STATIONS), 2), 0.02)
    sigma[:2] = 1.0
    weighted = locate_window(
        curves, window, RATE, STATIONS, POSITIONS, available, first_p, tt, config, None, None, sigma
    )
    assert not isinstance(plain, str) and not isinstance(weighted, str)

    def error(est) -> float:
        return math.hypot(
            math.hypot(est.east_km - TRUE[0], est.north_km - TRUE[1]), est.depth_km - TRUE[2]
        )

    assert error(weighted) < 0.5 * error(plain), (error(weighted), error(plain))
    spread = {(a.station, a.phase): a.sigma for a in weighted.arrivals}
    assert spread[(STATIONS[0], "P")] >= 1.0


def test_sine_train_trains_only_the_arrival_head_with_the_location_loss(tmp_path):
    """``sine train --arrival-head --trainable arrival_head --location-weight 1``: the location loss is logged,
    only the arrival head changes, the saved weights carry it."""
    import pandas as pd

    from sine_seisbench.cli import main
    from sine_seisbench.data.fixture import write_event_dataset

    data = tmp_path / "data"
    write_event_dataset(data, n_events=10, n_stations=5, seed=1)
    torch.manual_seed(0)
    init = tmp_path / "init"
    SINE(max_stations=8).save(init)
    out = tmp_path / "joint"
    argv = ["train", "--dataset", str(data), "--init", str(init), "--out", str(out)]
    argv += ["--epochs", "1", "--batch-size", "4", "--arrival-head", "--trainable", "arrival_head"]
    argv += ["--location-weight", "1", "--graph-picks", "off", "--seed", "0"]
    assert main(argv) == 0
    metrics = pd.read_csv(f"{out}.metrics.csv")
    assert np.isfinite(metrics["loss_location"]).all()
    before = SINE.load(init).state_dict()
    after = SINE.load(out)
    assert after.arrival_head is not None
    for key, value in before.items():
        assert torch.equal(value, after.state_dict()[key]), key
    # a part that does not exist is named
    bad = argv[:-6] + ["--trainable", "arow_head", "--seed", "0"]
    assert main(bad) == 2
