"""LivePortrait's source-video Kalman smoother (talkinghead.motion.kalman), against pykalman and a direct solve."""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.motion.kalman import kalman_smooth


def motion_like(n: int = 40, dim: int = 9, seed: int = 0) -> np.ndarray:
    """A random walk plus jitter, float32 like M's outputs."""
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.normal(0, 3e-3, (n, dim)), 0) + rng.normal(0, 1e-3, (n, dim))).astype(np.float32)


def test_matches_pykalman_smooth_as_liveportrait_calls_it() -> None:
    pykalman = pytest.importorskip("pykalman")
    x = motion_like()
    kf = pykalman.KalmanFilter(initial_state_mean=x[0], n_dim_obs=x.shape[1],
                               transition_covariance=1e-5 * np.eye(x.shape[1]),
                               observation_covariance=3e-7 * np.eye(x.shape[1]))
    expected, _ = kf.smooth(x)
    np.testing.assert_allclose(kalman_smooth(x), expected, rtol=0, atol=1e-12)


def test_equals_the_least_squares_solution() -> None:
    """RTS means = argmin (x0 − z0)²/1 + Σ (z_t − x_t)²/r + Σ (x_t − x_{t−1})²/q, per component."""
    z = motion_like(n=25, dim=3, seed=1).astype(np.float64)
    r, q, n = 3e-7, 1e-5, len(z)
    a = np.zeros((n, n))
    a[np.arange(n), np.arange(n)] = 1 / r
    a[0, 0] += 1.0
    for t in range(1, n):
        a[[t, t - 1], [t, t - 1]] += 1 / q
        a[t, t - 1] -= 1 / q
        a[t - 1, t] -= 1 / q
    b = z / r
    b[0] += z[0]
    np.testing.assert_allclose(kalman_smooth(z), np.linalg.solve(a, b), rtol=0, atol=1e-10)


def test_light_smoothing_and_edge_cases() -> None:
    x = motion_like()
    out = kalman_smooth(x)
    assert 0 < np.abs(out - x).max() < 1e-3                      # q/r ≈ 33: gain ≈ 0.97
    np.testing.assert_array_equal(kalman_smooth(np.tile(x[:1], (10, 1))), np.tile(x[:1], (10, 1)).astype(np.float64))
    np.testing.assert_allclose(kalman_smooth(x[:1]), x[:1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        kalman_smooth(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        kalman_smooth(x, observation_variance=0.0)
