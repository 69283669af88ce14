"""A 1-D Fourier neural operator in Flax nnx whose spectral weights are dense, Tucker or CP tensors.

FNO (Li et al., ICLR 2021), 1-D: ``lift -> L x [spectral conv + pointwise linear, GELU] -> project``. The spectral
convolution of a layer with ``c`` channels and ``m`` kept modes is

    y = irfft( pad( einsum("bki,iok->bko", rfft(x)[:, :m, :], W) ) ),     W of shape (c_in, c_out, m), complex,

and the TFNO of Kossaifi et al. (TMLR 2023) stores ``W`` factorised:

* ``"dense"``: ``W`` itself, ``c_in c_out m`` complex numbers;
* ``"tucker"``: ``W = core x_1 U_in x_2 U_out x_3 U_modes`` (a :class:`tnkit.Tucker`, rebuilt with
  :func:`tnkit.tucker.to_dense`), ``r_in r_out r_m + c_in r_in + c_out r_out + m r_m`` complex numbers;
* ``"cp"``: ``W = sum_r w_r a_r (x) b_r (x) c_r`` (a :class:`tnkit.CP`, rebuilt with :func:`tnkit.cp.to_dense`),
  ``R (1 + c_in + c_out + m)`` complex numbers.

Every factor is a complex ``nnx.Param``; a real parameter count counts each complex number twice. Initialisation:
all parameters are drawn from a NumPy generator (``rng``); the dense weight is complex Gaussian with ``E|W|^2 = 2 / (c_in + c_out)`` (neuraloperator's ``SpectralConv``); the
factorised weights are Gaussian with one common scale for all their pieces, chosen so that the rebuilt ``W`` has the
same ``E|W|^2``.

Gradients: JAX's ``grad`` of a real loss with respect to a complex parameter is the *conjugate* of the steepest-ascent
direction, and optax does not conjugate, so the training step conjugates the gradients before ``adam``
(:func:`conjugate_complex`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tnkit import CP, Tucker, cp, tucker

_NO_RNGS = nnx.Rngs(
    0
)  # nnx.Linear asks for rngs; our initialisers draw from a NumPy generator instead

__all__ = [
    "FNO1d",
    "SpectralConv1d",
    "WeightSpec",
    "conjugate_complex",
    "count_params",
    "spectral_param_count",
]


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """How a spectral weight ``(c_in, c_out, modes)`` is stored.

    Attributes:
      kind: ``"dense"``, ``"tucker"`` or ``"cp"``.
      rank: ``None`` for dense; ``(r_in, r_out, r_modes)`` for Tucker; ``R`` (an int) for CP.
    """

    kind: str = "dense"
    rank: int | tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.kind == "dense":
            if self.rank is not None:
                raise ValueError(f"rank: a dense weight has no rank, got {self.rank}")
        elif self.kind == "tucker":
            if not (
                isinstance(self.rank, tuple)
                and len(self.rank) == 3
                and all(int(r) >= 1 for r in self.rank)
            ):
                raise ValueError(
                    f"rank: Tucker expects (r_in, r_out, r_modes), positive ints, got {self.rank}"
                )
        elif self.kind == "cp":
            if not (isinstance(self.rank, int) and self.rank >= 1):
                raise ValueError(f"rank: CP expects a positive int R, got {self.rank}")
        else:
            raise ValueError(
                f"kind: expected 'dense', 'tucker' or 'cp', got {self.kind!r}"
            )

    @property
    def label(self) -> str:
        if self.kind == "dense":
            return "dense"
        if self.kind == "tucker":
            return "tucker " + "x".join(str(r) for r in self.rank)
        return f"cp {self.rank}"


def spectral_param_count(spec: WeightSpec, c_in: int, c_out: int, modes: int) -> int:
    """Real parameters of one spectral weight (closed form; a complex number counts 2)."""
    if spec.kind == "dense":
        n = c_in * c_out * modes
    elif spec.kind == "tucker":
        ri, ro, rm = spec.rank
        n = ri * ro * rm + c_in * ri + c_out * ro + modes * rm
    else:
        n = spec.rank * (1 + c_in + c_out + modes)
    return 2 * n


def _complex_normal(rng: np.random.Generator, shape, std):
    z = rng.standard_normal((*shape, 2)) * (std / math.sqrt(2.0))
    return jnp.asarray(z[..., 0] + 1j * z[..., 1], jnp.complex64)


def _linear(rng: np.random.Generator, c_in: int, c_out: int) -> nnx.Linear:
    # LeCun-normal kernel (nnx.Linear's default variance 1 / c_in), zero bias, drawn by NumPy: initialising with
    # jax.random costs one XLA compile per parameter shape, which dominates the smoke run.
    def kernel_init(key, shape, dtype):
        return jnp.asarray(rng.standard_normal(shape) / math.sqrt(shape[0]), dtype)

    return nnx.Linear(
        c_in,
        c_out,
        kernel_init=kernel_init,
        bias_init=nnx.initializers.zeros,
        rngs=_NO_RNGS,
    )


class SpectralConv1d(nnx.Module):
    """``x (b, n, c_in) -> irfft(rfft(x)[:, :modes] . W)  (b, n, c_out)``, ``W`` stored as ``spec`` says."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        modes: int,
        spec: WeightSpec,
        *,
        rng: np.random.Generator,
    ):
        self.c_in, self.c_out, self.modes, self.spec = c_in, c_out, modes, spec
        target = math.sqrt(2.0 / (c_in + c_out))  # rms of |W|
        if spec.kind == "dense":
            self.weight = nnx.Param(_complex_normal(rng, (c_in, c_out, modes), target))
        elif spec.kind == "tucker":
            ranks = spec.rank
            # |W| rms = s^4 sqrt(prod r) for core and factors of rms s each.
            s = (target / math.sqrt(math.prod(ranks))) ** 0.25
            self.core = nnx.Param(_complex_normal(rng, ranks, s))
            self.factors = nnx.List(
                [
                    nnx.Param(_complex_normal(rng, (n, r), s))
                    for n, r in zip((c_in, c_out, modes), ranks)
                ]
            )
        else:
            r = spec.rank
            s = (target / math.sqrt(r)) ** 0.25
            self.weights = nnx.Param(_complex_normal(rng, (r,), s))
            self.factors = nnx.List(
                [
                    nnx.Param(_complex_normal(rng, (n, r), s))
                    for n in (c_in, c_out, modes)
                ]
            )

    def dense_weight(self) -> jax.Array:
        """The spectral weight ``W`` of shape ``(c_in, c_out, modes)``, rebuilt from its factors by tnkit."""
        if self.spec.kind == "dense":
            return self.weight[...]
        if self.spec.kind == "tucker":
            return tucker.to_dense(
                Tucker(self.core[...], [f[...] for f in self.factors])
            )
        return cp.to_dense(CP(self.weights[...], [f[...] for f in self.factors]))

    def __call__(self, x):
        n = x.shape[-2]
        if self.modes > n // 2 + 1:
            raise ValueError(
                f"x: {n} grid points keep at most {n // 2 + 1} modes, the layer wants {self.modes}"
            )
        xh = jnp.fft.rfft(x, axis=-2)[..., : self.modes, :]
        yh = jnp.einsum(
            "bki,iok->bko", xh, self.dense_weight(), precision=jax.lax.Precision.HIGHEST
        )
        yh = jnp.pad(yh, ((0, 0), (0, n // 2 + 1 - self.modes), (0, 0)))
        return jnp.fft.irfft(yh, n=n, axis=-2)


class FNO1d(nnx.Module):
    """``u0 (b, n) -> u1 (b, n)``: lift ``[u0, x]`` to ``width`` channels, ``layers`` Fourier layers, project."""

    def __init__(
        self,
        width: int,
        modes: int,
        layers: int,
        spec: WeightSpec,
        *,
        hidden: int = 64,
        rng: np.random.Generator,
    ):
        self.lift = _linear(rng, 2, width)
        self.spectral = nnx.List(
            [SpectralConv1d(width, width, modes, spec, rng=rng) for _ in range(layers)]
        )
        self.pointwise = nnx.List([_linear(rng, width, width) for _ in range(layers)])
        self.proj1 = _linear(rng, width, hidden)
        self.proj2 = _linear(rng, hidden, 1)

    def __call__(self, u0):
        b, n = u0.shape
        grid = jnp.broadcast_to(jnp.arange(n, dtype=u0.dtype) / n, (b, n))
        h = self.lift(jnp.stack([u0, grid], axis=-1))
        last = len(self.spectral) - 1
        for i, (sc, pw) in enumerate(zip(self.spectral, self.pointwise)):
            h = sc(h) + pw(h)
            if i < last:
                h = jax.nn.gelu(h)
        return self.proj2(jax.nn.gelu(self.proj1(h)))[..., 0]


def count_params(tree) -> int:
    """Real parameters in a pytree of arrays (a complex entry counts 2)."""
    return sum(
        x.size * (2 if jnp.iscomplexobj(x) else 1) for x in jax.tree.leaves(tree)
    )


def conjugate_complex(grads):
    """Conjugate the complex leaves of a gradient pytree (JAX's convention -> the descent direction optax expects)."""
    return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grads)
