"""The event step's Huber least squares against scipy's ``least_squares`` on the same cost."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from sine_seisbench.pipeline.lsq import huber_cost, huber_least_squares


def _problem(seed: int, n_stations: int, outliers: int, true_depth: float):
    """Arrival times of a homogeneous half-space (6 km/s) at random stations, some picks far off."""
    rng = np.random.default_rng(seed)
    stations = rng.uniform(-40, 40, (n_stations, 2))
    true = np.array([rng.uniform(-10, 10), rng.uniform(-10, 10), true_depth, 2.0])

    def times(x: np.ndarray) -> np.ndarray:
        return np.sqrt(((x[:2] - stations) ** 2).sum(1) + x[2] ** 2) / 6.0 + x[3]

    obs = times(true) + rng.normal(0, 0.03, n_stations)
    obs[rng.choice(n_stations, outliers, replace=False)] += rng.uniform(1.0, 3.0, outliers)

    def residuals(x: np.ndarray) -> np.ndarray:
        return (obs - times(x)) / 0.05

    def evaluate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = residuals(x)
        jac = np.empty((len(f), 4))
        for k in range(4):
            step = np.zeros(4)
            step[k] = 1e-6 * max(1.0, abs(x[k]))
            jac[:, k] = (residuals(x + step) - f) / step[k]
        return f, jac

    return evaluate, residuals, true


@pytest.mark.parametrize(
    "seed,n_stations,outliers,true_depth",
    [
        (0, 12, 0, 8.0),
        (1, 12, 2, 8.0),
        (2, 6, 1, 15.0),
        (3, 30, 5, 3.0),
        (4, 8, 0, 0.05),
        (5, 5, 0, 25.0),
    ],
)
def test_huber_fit_finds_scipys_minimum(seed, n_stations, outliers, true_depth):
    """Same cost, bounds and scales as scipy (trust-region reflective): the same minimum, to well under a
    metre, also where the depth ends on its bound and where picks are outliers; fewer evaluations."""
    evaluate, residuals, true = _problem(seed, n_stations, outliers, true_depth)
    lower = np.array([-np.inf, -np.inf, 0.0, -np.inf])
    upper = np.array([np.inf, np.inf, 30.0, np.inf])
    x0 = np.array([0.0, 0.0, 10.0, 0.0])
    scale = np.array([1.0, 1.0, 1.0, 0.1])
    ours = huber_least_squares(evaluate, x0, lower, upper, f_scale=1.0, x_scale=scale)
    ref = least_squares(
        residuals,
        x0,
        jac=lambda x: evaluate(x)[1],
        loss="huber",
        f_scale=1.0,
        bounds=(lower, upper),
        x_scale=scale,
    )
    assert ours.status > 0
    assert ours.cost == pytest.approx(huber_cost(residuals(ours.x), 1.0), rel=1e-12)
    assert ours.cost <= ref.cost * (1 + 1e-7)
    assert np.allclose(ours.x[:3], ref.x[:3], atol=1e-3)  # km
    assert abs(ours.x[3] - ref.x[3]) < 1e-4  # s
    assert lower[2] <= ours.x[2] <= upper[2]
    assert (
        ours.nfev <= 1.25 * ref.nfev + 2
    )  # a few more far from the start at most; fewer on the event step
    if outliers == 0:
        assert np.hypot(*(ours.x[:2] - true[:2])) < 1.0


def test_huber_fit_holds_a_variable_at_its_bound():
    """A minimum outside the box ends on the bound (the depth of a source above the surface)."""

    def evaluate(x):
        f = np.array([x[0] + 2.0, x[1] - 1.0, 0.5 * (x[0] + x[1])])
        return f, np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])

    result = huber_least_squares(
        evaluate, np.array([1.0, 0.0]), np.array([0.0, -5.0]), np.array([5.0, 5.0])
    )
    assert result.x[0] == 0.0
    # with x0 held at 0: (x1 - 1)^2 + (x1 / 2)^2 is least at x1 = 0.8 (the first residual, 2, is constant)
    assert result.x[1] == pytest.approx(0.8, abs=1e-6)
    assert result.status > 0


def test_huber_cost_is_scipys():
    f = np.array([-3.0, -0.5, 0.0, 0.9, 2.5])
    z = (f / 1.5) ** 2
    rho = np.where(z <= 1, z, 2 * np.sqrt(z) - 1)
    assert huber_cost(f, 1.5) == pytest.approx(0.5 * 1.5**2 * rho.sum(), rel=1e-14)
