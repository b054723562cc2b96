"""Flow matching on the linear (optimal-transport) path: time sampling, loss, Euler solver.

Convention (AR1, pi0): ``t = 0`` is noise and ``t = 1`` is data,
``x_t = (1 - t) * eps + t * a`` and the target velocity is ``v = a - eps``. Training times
come from a shifted Beta(1.5, 1) that puts more mass on noisy times. The solver is
stateless: it takes any ``(x_t, t) -> v`` function, so the same code serves the model,
tests with analytic fields, and ONNX-exported experts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_time(
    batch_size: int,
    alpha: float = 1.5,
    beta: float = 1.0,
    shift: float = 0.999,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Training times ``t = shift * (1 - u)``, ``u ~ Beta(alpha, beta)``, shape ``(B,)``.

    With Beta(1.5, 1) ``u`` leans to 1, so ``t`` leans to 0 (noise), as in pi0/AR1;
    ``shift < 1`` keeps ``t`` away from exactly 1 (pure data).
    """
    # Beta via two Gammas, drawn with the generator (torch.distributions takes none).
    ga = _gamma(torch.full((batch_size,), alpha, dtype=torch.float64), generator)
    gb = _gamma(torch.full((batch_size,), beta, dtype=torch.float64), generator)
    u = ga / (ga + gb)
    return (shift * (1.0 - u)).to(dtype=torch.float32, device=device)


def _gamma(concentration: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(k, 1) samples by Marsaglia-Tsang with the boost for k < 1."""
    k = concentration
    boost = torch.ones_like(k)
    small = k < 1
    if small.any():
        u = torch.rand(k.shape, generator=generator, dtype=k.dtype)
        boost = torch.where(small, u ** (1.0 / k), boost)
        k = torch.where(small, k + 1.0, k)
    d = k - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(k)
    todo = torch.ones_like(k, dtype=torch.bool)
    while todo.any():
        x = torch.randn(k.shape, generator=generator, dtype=k.dtype)
        v = (1.0 + c * x) ** 3
        u = torch.rand(k.shape, generator=generator, dtype=k.dtype)
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * x**2 + d - d * v
                        + d * torch.log(v.clamp_min(1e-300)))
        accept = todo & ok
        out = torch.where(accept, d * v, out)
        todo = todo & ~ok
    return out * boost


def interpolate(noise: torch.Tensor, actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point on the linear path, ``(1 - t) * noise + t * actions``; ``t`` of shape ``(B,)``."""
    tt = t.reshape(-1, *([1] * (actions.dim() - 1)))
    return (1.0 - tt) * noise + tt * actions


def target_velocity(noise: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Velocity of the linear path, ``actions - noise`` (constant along the path)."""
    return actions - noise


def flow_matching_errors(velocity_fn: VelocityFn, actions: torch.Tensor, t: torch.Tensor,
                         noise: torch.Tensor) -> torch.Tensor:
    """Per-sample ``(B,)`` mean squared error of ``velocity_fn`` on the linear path.

    The velocity at ``x_t = interpolate(noise, actions, t)`` against ``actions - noise``,
    averaged over each sample's elements (:func:`flow_matching_loss` averages these).
    """
    x_t = interpolate(noise, actions, t)
    err = (velocity_fn(x_t, t) - target_velocity(noise, actions)) ** 2
    return err.reshape(err.shape[0], -1).mean(dim=1)


def flow_matching_loss(
    velocity_fn: VelocityFn,
    actions: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between ``velocity_fn(x_t, t)`` and ``actions - noise``.

    ``weights`` (broadcastable to the per-sample loss ``(B,)``) mask samples out.
    """
    per_sample = flow_matching_errors(velocity_fn, actions, t, noise)
    if weights is None:
        return per_sample.mean()
    w = weights.to(per_sample)
    return (per_sample * w).sum() / w.sum().clamp_min(1e-9)


def euler_times(steps: int, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """The times at which :func:`euler_solve` calls the velocity function.

    ``i / steps`` for ``i = 0 .. steps - 1``, so a function can precompute its time
    conditioning.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
        raise ValueError(f"flow steps must be a positive int, got {steps!r}")
    dt = 1.0 / steps
    return (torch.arange(steps, dtype=torch.float64) * dt).to(dtype=dtype, device=device)


def euler_solve(velocity_fn: VelocityFn, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate ``dx/dt = velocity_fn(x, t)`` from ``t = 0`` (noise) to ``t = 1``.

    ``steps`` equal Euler steps; ``t`` is passed as a ``(B,)`` tensor holding
    :func:`euler_times`. Stateless: the function is the only model state.
    """
    times = euler_times(steps, noise.dtype).tolist()  # validates steps
    x = noise
    dt = 1.0 / steps
    for ti in times:
        t = torch.full((x.shape[0],), ti, dtype=x.dtype, device=x.device)
        x = torch.add(x, velocity_fn(x, t), alpha=dt)
    return x
