"""Torch unicycle integration, the same arithmetic as :func:`alpamayo_ros.unicycle.integrate`.

The model predicts controls (acceleration, curvature); this turns them into x, y,
heading, speed on the device, differentiably (a trajectory loss can use it). A test pins
it to the numpy reference.
"""

from __future__ import annotations

import torch

from alpamayo_ros.unicycle import DT_S


def integrate(acceleration_mps2: torch.Tensor, curvature_per_m: torch.Tensor,
              v0_mps: torch.Tensor | float, dt_s: float = DT_S, allow_reverse: bool = False
              ) -> torch.Tensor:
    """States ``(..., T, 4)`` = (x_m, y_m, heading_rad, velocity_mps) after each step.

    Constant controls within a step; the position advances by the chord of the step's
    arc at the mean heading (exact for constant curvature); without ``allow_reverse`` a
    braking car halts at zero speed.
    """
    a, k = acceleration_mps2, curvature_per_m
    if a.shape != k.shape:
        raise ValueError(f"acceleration shape {tuple(a.shape)} != curvature shape "
                         f"{tuple(k.shape)}")
    batch_shape = a.shape[:-1]
    v = torch.as_tensor(v0_mps, dtype=a.dtype, device=a.device).expand(batch_shape)
    x = torch.zeros(batch_shape, dtype=a.dtype, device=a.device)
    y = torch.zeros_like(x)
    theta = torch.zeros_like(x)
    out = []
    for i in range(a.shape[-1]):
        ai, ki = a[..., i], k[..., i]
        v_next = v + ai * dt_s
        arc = v * dt_s + 0.5 * ai * dt_s**2
        if not allow_reverse:
            stopping = v_next < 0.0
            safe_a = torch.where(stopping, torch.clamp(ai, max=-1e-9), torch.ones_like(ai))
            arc = torch.where(stopping, torch.clamp(v, min=0.0) ** 2 / (-2.0 * safe_a), arc)
            v_next = torch.where(stopping, torch.zeros_like(v_next), v_next)
        dtheta = ki * arc
        mid = theta + 0.5 * dtheta
        chord = arc * torch.sinc(dtheta / (2.0 * torch.pi))  # 2 R sin(dtheta / 2), R = 1/kappa
        x = x + chord * torch.cos(mid)
        y = y + chord * torch.sin(mid)
        theta = theta + dtheta
        v = v_next
        out.append(torch.stack([x, y, theta, v], dim=-1))
    return torch.stack(out, dim=-2)
