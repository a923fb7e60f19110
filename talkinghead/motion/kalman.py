"""LivePortrait's Kalman smoothing of video-to-video motion sequences.

LivePortrait (src/utils/filter.py ``smooth``) smooths the rotation and
expression sequences of a source-video job with pykalman's
``KalmanFilter(initial_state_mean=x[0], transition_covariance=q·I,
observation_covariance=r·I).smooth(x)`` — a Rauch–Tung–Striebel smoother
(forward Kalman filter, then a backward pass over the whole sequence) of a
random-walk model: identity transition and observation matrices, zero
offsets, initial state covariance I (pykalman's default), q = 1e-5
(``process_variance``), r = ``driving_smooth_observation_variance`` = 3e-7.

Because every covariance is a multiple of the identity, the D components
are independent and share one scalar variance recursion, so the smoother is
computed here for all components at once with scalar gains (Rauch, Tung &
Striebel 1965, AIAA J. 3(8); the recursion as in pykalman's ``_filter`` /
``_smooth``), in float64.  It needs the whole sequence (the backward pass
starts at the last frame): callers hold the motion — D floats per frame —
not the frames.

With q/r ≈ 33 the gain is ≈ 0.97: the smoothing is very light (measured in
tests/test_kalman.py against pykalman).
"""

from __future__ import annotations

import numpy as np

OBSERVATION_VARIANCE = 3e-7
"""LivePortrait's ``driving_smooth_observation_variance`` default (src/config/argument_config.py, inference_config.py)."""
PROCESS_VARIANCE = 1e-5
"""LivePortrait's ``process_variance`` default of ``smooth`` (src/utils/filter.py)."""
INITIAL_VARIANCE = 1.0
"""Initial state variance: pykalman's default ``initial_state_covariance`` = I."""


def kalman_smooth(observations: np.ndarray, observation_variance: float = OBSERVATION_VARIANCE,
                  process_variance: float = PROCESS_VARIANCE) -> np.ndarray:
    """RTS-smoothed means of a random-walk Kalman model, LivePortrait's ``smooth``.

    Model: state x_t = x_{t−1} + w (w ~ N(0, q·I)), observation z_t = x_t + v
    (v ~ N(0, r·I)), x_0 ~ N(z_0, I).  Forward: predicted variance P⁻_0 = 1,
    P⁻_t = P_{t−1} + q; gain K_t = P⁻_t / (P⁻_t + r); filtered mean
    m_t = m_{t−1} + K_t (z_t − m_{t−1}) (m_{−1} = z_0), P_t = (1 − K_t) P⁻_t.
    Backward: s_{T−1} = m_{T−1}, s_t = m_t + (P_t / P⁻_{t+1}) (s_{t+1} − m_t).

    Args:
        observations: (T, D) float (T ≥ 1 frames, D components, any units).
        observation_variance: r, in squared units of the observations (> 0).
        process_variance: q, in squared units per frame (> 0).

    Returns:
        (T, D) float64 smoothed means (pykalman's ``smoothed_state_means``).

    Raises:
        ValueError: ``observations`` is not a non-empty 2-D array, or a variance is not > 0.
    """
    z = np.asarray(observations, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"expected (T, D) observations with T >= 1, got shape {z.shape}")
    if not (observation_variance > 0 and process_variance > 0):
        raise ValueError(f"variances must be > 0, got r={observation_variance}, q={process_variance}")
    n = len(z)
    predicted_var = np.empty(n)
    filtered_var = np.empty(n)
    filtered = np.empty_like(z)
    mean, var = z[0], INITIAL_VARIANCE
    for t in range(n):
        if t > 0:
            var = filtered_var[t - 1] + process_variance
        predicted_var[t] = var
        gain = var / (var + observation_variance)
        mean = mean + gain * (z[t] - mean)
        filtered[t] = mean
        filtered_var[t] = (1.0 - gain) * var
    smoothed = filtered.copy()
    for t in range(n - 2, -1, -1):
        smoothed[t] = filtered[t] + (filtered_var[t] / predicted_var[t + 1]) * (smoothed[t + 1] - filtered[t])
    return smoothed
