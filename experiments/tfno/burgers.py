"""A pseudo-spectral solver for the 1-D viscous Burgers equation, and the random initial conditions of the data set.

The equation, on the periodic domain ``[0, 1)``::

    u_t + u u_x = nu u_xx,    u(x, 0) = u0(x).

Method (Fourier pseudo-spectral in space, integrating-factor Runge-Kutta 4 in time):

* ``u`` lives on ``n`` equispaced points ``x_j = j / n``; its real FFT ``u_hat[k]``, ``k = 0 .. n/2``, with angular
  wavenumbers ``kappa = 2 pi k``.
* The nonlinear term is written in conservative form ``u u_x = (u^2 / 2)_x``, so in Fourier space
  ``N(u_hat) = -(i kappa / 2) FFT(u^2)``, with the product formed on the grid and the result *dealiased* by the 2/3
  rule (every mode with ``k > n / 3`` is zeroed, in ``N`` and in the state). ``N`` has no ``k = 0`` component, so the
  mean of ``u`` is conserved exactly.
* The viscous term is linear and diagonal, ``-nu kappa^2 u_hat``; it is integrated *exactly* by the integrating
  factor ``v = exp(nu kappa^2 t) u_hat``, which satisfies ``v_t = exp(nu kappa^2 t) N(u_hat)``; the classical RK4 is
  applied to ``v`` (the integrating-factor RK4 of Trefethen, *Spectral Methods in MATLAB*, program 27). So the step
  size is limited only by the advection, never by the stiff viscous term.
* Step size: the RK4 stability region covers ``|dt lambda| <= 2.8`` on the imaginary axis and the advective
  eigenvalues are bounded by ``kappa_max max|u|``; viscous Burgers obeys the maximum principle
  (``max|u(., t)| <= max|u0|``), so ``dt = 2.8 cfl / (kappa_max max|u0|)`` with ``0 < cfl <= 1`` (default 1) is
  stable for the whole run. The number of steps is chosen eagerly from ``u0`` (at least ``min_steps``), then ``dt``
  is shrunk so that the steps end exactly at ``t_final``.

Initial conditions (:func:`random_initial_conditions`) follow the Burgers data set of the FNO paper (Li et al.,
ICLR 2021): a Gaussian random field with covariance ``625 (-Delta + 25 I)^{-2}`` on the periodic unit interval,
expanded in its Karhunen-Loeve basis ``sqrt(2) cos(2 pi k x), sqrt(2) sin(2 pi k x)`` with standard deviations
``25 / ((2 pi k)^2 + 25)``; the constant mode is left out (mean zero), and modes above ``n / 3`` too (dealiasing).

The check of the solver against an independent solution is in ``tests/test_experiment_tfno.py``: the Cole-Hopf
transform ``u = -2 nu phi_x / phi`` maps Burgers to the heat equation, so
``phi = a + sum_k c_k exp(-nu (2 pi k)^2 t) cos(2 pi k x + theta_k)`` (``a > sum |c_k|``) gives an exact solution
(:func:`cole_hopf_solution`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "cole_hopf_solution",
    "heat_solve",
    "num_steps",
    "random_initial_conditions",
    "solve",
]

#: Half-width of the RK4 stability region on the imaginary axis (about 2.83); ``cfl`` is a fraction of it.
_RK4_IMAG_LIMIT = 2.8


def _wavenumbers(n: int, dtype):
    k = np.arange(n // 2 + 1)
    kappa = 2.0 * np.pi * k
    mask = (k <= n // 3).astype(np.float64)  # 2/3 rule: keep |k| <= n / 3
    return jnp.asarray(kappa, dtype), jnp.asarray(mask, dtype)


def num_steps(u0, t_final: float, *, cfl: float = 1.0, min_steps: int = 50) -> int:
    """The number of RK4 steps :func:`solve` takes: ``ceil(t_final kappa_max max|u0| / cfl)``, at least ``min_steps``.

    ``kappa_max = 2 pi floor(n / 3)`` is the largest wavenumber kept by the 2/3 rule, ``n = u0.shape[-1]``. Eager
    (needs a concrete ``u0``).
    """
    u0 = np.asarray(u0)
    n = u0.shape[-1]
    kappa_max = 2.0 * np.pi * (n // 3)
    umax = float(np.max(np.abs(u0))) if u0.size else 0.0
    if not math.isfinite(umax):
        raise ValueError(f"u0: expected finite values, got max|u0| = {umax}")
    return max(int(min_steps), math.ceil(t_final * kappa_max * umax / cfl))


@functools.partial(jax.jit, static_argnames=("steps",))
def _integrate(u0, nu, dt, *, steps: int):
    n = u0.shape[-1]
    kappa, mask = _wavenumbers(n, u0.dtype)
    ik_half = (-0.5j * kappa).astype(jnp.result_type(u0.dtype, jnp.complex64))

    def nonlinear(uh):
        u = jnp.fft.irfft(uh, n=n, axis=-1)
        return ik_half * mask * jnp.fft.rfft(u * u, axis=-1)

    e = jnp.exp(-nu * kappa**2 * dt / 2)  # half-step integrating factor
    e2 = e * e

    def step(_, uh):
        a = dt * nonlinear(uh)
        b = dt * nonlinear(e * (uh + a / 2))
        c = dt * nonlinear(e * uh + b / 2)
        d = dt * nonlinear(e2 * uh + e * c)
        return e2 * uh + (e2 * a + 2 * e * (b + c) + d) / 6

    uh0 = mask * jnp.fft.rfft(u0, axis=-1)
    uh = jax.lax.fori_loop(0, steps, step, uh0)
    return jnp.fft.irfft(uh, n=n, axis=-1)


def solve(u0, nu: float, t_final: float, *, cfl: float = 1.0, min_steps: int = 50):
    """``u(., t_final)`` of viscous Burgers from ``u0`` (pseudo-spectral, 2/3 dealiasing, integrating-factor RK4).

    Args:
      u0: real array of shape ``(..., n)``: initial values on the grid ``x_j = j / n`` of ``[0, 1)``; leading axes
        are a batch. Modes above ``n / 3`` are dropped (dealiasing).
      nu: viscosity, ``> 0``.
      t_final: end time, ``>= 0``.
      cfl: fraction of the RK4 stability limit used, ``dt <= cfl * 2.8 / (kappa_max max|u0|)``, shrunk so that the
        steps end exactly at ``t_final`` (see :func:`num_steps`, which it calls with ``cfl * 2.8``).
      min_steps: fewest steps taken.

    Returns:
      ``(u(., t_final), steps)``: the solution, shape and dtype of ``u0``, and the number of RK4 steps taken.
    """
    u0 = jnp.asarray(u0)
    if not jnp.issubdtype(u0.dtype, jnp.floating) or u0.ndim < 1 or u0.shape[-1] < 4:
        raise ValueError(
            f"u0: expected a real array of shape (..., n) with n >= 4, got {u0.dtype} {u0.shape}"
        )
    if not nu > 0:
        raise ValueError(f"nu: expected a positive viscosity, got {nu}")
    if not t_final >= 0:
        raise ValueError(f"t_final: expected >= 0, got {t_final}")
    if not 0 < cfl <= 1:
        raise ValueError(f"cfl: expected 0 < cfl <= 1, got {cfl}")
    steps = num_steps(u0, t_final, cfl=cfl * _RK4_IMAG_LIMIT, min_steps=min_steps)
    dt = t_final / steps
    return _integrate(
        u0, jnp.asarray(nu, u0.dtype), jnp.asarray(dt, u0.dtype), steps=steps
    ), steps


def heat_solve(u0, nu: float, t_final: float):
    """The linear part alone (``u_t = nu u_xx``, exact in Fourier space): the baseline that ignores advection.

    NumPy, float64; ``u0`` of shape ``(..., n)``.
    """
    u0 = np.asarray(u0, np.float64)
    n = u0.shape[-1]
    kappa = 2.0 * np.pi * np.arange(n // 2 + 1)
    return np.fft.irfft(
        np.fft.rfft(u0, axis=-1) * np.exp(-nu * kappa**2 * t_final), n=n, axis=-1
    )


def random_initial_conditions(
    rng: np.random.Generator,
    count: int,
    n: int,
    *,
    scale: float = 25.0,
    shift: float = 25.0,
):
    """``count`` draws of the FNO Burgers Gaussian random field (mean zero), on ``n`` grid points; float64.

    ``u0 = sum_{k=1}^{n/3} s_k sqrt(2) (a_k cos(2 pi k x) + b_k sin(2 pi k x))``, ``a_k, b_k ~ N(0, 1)``,
    ``s_k = scale / ((2 pi k)^2 + shift)`` (covariance ``scale^2 (-Delta + shift I)^{-2}``; the FNO paper's
    ``625 (-Delta + 25 I)^{-2}`` is the default). Returns an array of shape ``(count, n)``.
    """
    kmax = n // 3
    k = np.arange(1, kmax + 1)
    s = scale / ((2 * np.pi * k) ** 2 + shift)
    a = rng.standard_normal((count, kmax))
    b = rng.standard_normal((count, kmax))
    x = np.arange(n) / n
    phase = 2 * np.pi * np.outer(k, x)  # (kmax, n)
    return np.sqrt(2.0) * ((a * s) @ np.cos(phase) + (b * s) @ np.sin(phase))


def cole_hopf_solution(x, t: float, nu: float, a: float, coeffs, phases):
    """The exact solution ``u = -2 nu phi_x / phi`` with ``phi = a + sum_k c_k exp(-nu (2 pi k)^2 t) cos(2 pi k x +
    theta_k)``, ``k = 1, 2, ...``; NumPy float64. Needs ``a > sum |c_k|`` (so ``phi > 0``)."""
    x = np.asarray(x, np.float64)
    phi = np.full_like(x, a)
    phi_x = np.zeros_like(x)
    for j, (c, th) in enumerate(zip(coeffs, phases, strict=True), start=1):
        kap = 2 * np.pi * j
        damp = c * np.exp(-nu * kap**2 * t)
        phi += damp * np.cos(kap * x + th)
        phi_x -= damp * kap * np.sin(kap * x + th)
    return -2 * nu * phi_x / phi
