"""A physical layer for PyTorch networks: Physics-Aware Training.

PAT (Wright et al., Nature 601, 549 (2022)) runs the forward pass on the
real physics and the backward pass through a differentiable twin of it,
evaluated where the physics really was: at the *applied* x and θ (after the
daemon's clamp and the actuator grid). As ``hilt-train`` builds it
(``crates/hilt-train/src/net/forward.rs``)::

    x_app = x + (applied_x − x).detach()        # value: applied, gradient: identity
    θ_app = θ + (applied_θ − θ).detach()
    f     = twin(x_app, θ_app)
    out   = f + (y_measured − f).detach()        # value: measured, gradient: twin's VJP

so the loss sees exactly what the rig measured, and the gradient reaching
x and θ is the twin's vector-Jacobian product at the applied point. The
twin's errors then only tilt the gradient, never the values the network
trains on, which is why PAT beats training on the twin alone (in silico).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from hilt.types import Measurement, Range
from hilt.torch.twin import Twin, same_device

if TYPE_CHECKING:  # pragma: no cover
    from hilt.lease import Lease

__all__ = ["PhysicalLayer", "physics_aware", "range_penalty", "clamp_to"]


def clamp_to(v: Tensor, r: Range) -> Tensor:
    """``v`` clamped into ``r`` as hilt-train clamps (``maximum`` then
    ``minimum``: at a value exactly on the limit the gradient is shared
    with the limit, as candle's clamp does)."""
    lo = torch.tensor(float(np.float32(r.min)), dtype=v.dtype)
    hi = torch.tensor(float(np.float32(r.max)), dtype=v.dtype)
    return torch.minimum(torch.maximum(v, lo), hi)


def range_penalty(v: Tensor, r: Range) -> Tensor:
    """Mean excess of ``v`` outside ``r`` in units of the range's width,
    through the paper's smooth hinge ``softplus(20 z)/20``: what keeps a
    network's device inputs and θ inside the limits (out there the clamp
    passes no gradient)."""
    u = (v - float(np.float32(r.min))) / max(float(np.float32(r.width)), 1e-12)

    def soft_relu(z: Tensor) -> Tensor:
        kz = z * 20.0
        return (torch.relu(kz) + torch.log(torch.exp(-kz.abs()) + 1.0)) / 20.0

    return (soft_relu(-u) + soft_relu(u - 1.0)).mean()


def physics_aware(
    twin: Twin, x: Tensor, theta: Tensor, m: Measurement
) -> Tensor:
    """PAT's output for a measurement ``m`` of inputs ``x`` at parameters
    ``theta``: the measured values, with the gradient of ``twin`` at the
    applied values (see the module doc)."""
    ax = torch.from_numpy(m.applied_x).to(x.dtype)
    at = torch.from_numpy(m.applied_theta).to(theta.dtype)
    y = torch.from_numpy(m.y).to(x.dtype)
    x_app = x + (ax - x).detach()
    t_app = theta + (at - theta).detach()
    f = twin(x_app, t_app)
    return f + (y - f).detach()


class PhysicalLayer(nn.Module):
    """One pass through a leased device with its own trainable ``theta``.

    ``forward(x)`` (``x [B, n_in]``) clamps x and θ into the device's
    published ranges, measures them on ``dev`` (``repeats`` times each,
    averaged) and returns the measurement, wired for PAT
    (:func:`physics_aware`): backward is the twin's vector-Jacobian product
    at the applied values. With ``mode = "twin"`` the twin is the layer,
    forward and backward, and the device is not touched (in-silico
    training, or predicting what the rig would do).

    ``theta`` starts uniform in the device's parameter range (seeded by
    ``generator``) unless given. The twin must have been fitted for a
    device that describes itself as ``dev`` does now (sizes, encoding,
    hyperparameters, ranges); a twin of another device would give the
    Jacobians of another physical system, so it is refused.

    After each forward, ``last`` holds the :class:`hilt.Measurement` (in
    ``pat`` mode) and ``last_input``/``last_output`` the values, for a
    network that follows its statistics.
    """

    def __init__(
        self,
        dev: "Lease",
        twin: Twin,
        theta: Optional[Union[npt.ArrayLike, Tensor]] = None,
        repeats: int = 1,
        mode: str = "pat",
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        spec = dev.spec
        diff = same_device(twin.spec, spec)
        if diff is not None:
            raise ValueError(
                f"the twin was fitted for device '{twin.spec.id}', which differs from "
                f"device '{spec.id}' as now described ({diff})"
            )
        self.dev = dev
        self.twin = twin
        self.spec = spec
        self.repeats = int(repeats)
        self.mode = mode
        if theta is None:
            r = spec.param_range
            t = torch.rand(1, spec.n_par, generator=generator, dtype=torch.float32)
            t = t * (r.max - r.min) + r.min
        else:
            t = torch.as_tensor(np.asarray(theta, dtype=np.float32)).reshape(1, spec.n_par)
        self.theta = nn.Parameter(t.clone())
        self.last: Optional[Measurement] = None
        self.last_output: Optional[Tensor] = None

    @property
    def mode(self) -> str:
        """``"pat"`` (measure, backpropagate through the twin) or ``"twin"``."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in ("pat", "twin"):
            raise ValueError(f"mode must be 'pat' or 'twin', not {value!r}")
        self._mode = value

    def measure(self, x: Tensor, theta: Optional[Tensor] = None) -> Measurement:
        """Measure ``x`` (and ``theta``, default this layer's), both clamped
        into the published ranges first, split into the device's
        ``max_batch``; no graph."""
        th = self.theta if theta is None else theta
        xs = clamp_to(x.detach().float(), self.spec.input_range).numpy()
        ts = clamp_to(th.detach().float(), self.spec.param_range).numpy()
        max_b = max(int(self.spec.max_batch), 1)
        if xs.shape[0] <= max_b:
            return self.dev.execute(xs, ts, repeats=self.repeats)
        parts = []
        for s in range(0, xs.shape[0], max_b):
            t_part = ts if ts.shape[0] == 1 else ts[s : s + max_b]
            parts.append(self.dev.execute(xs[s : s + max_b], t_part, repeats=self.repeats))
        return _concat(parts)

    def forward(self, x: Tensor) -> Tensor:
        if self._mode == "twin":
            y = self.twin(
                clamp_to(x, self.spec.input_range), clamp_to(self.theta, self.spec.param_range)
            )
            self.last = None
        else:
            m = self.measure(x)
            self.last = m
            y = physics_aware(self.twin, x, self.theta, m)
        self.last_output = y.detach()
        return y

    def penalty(self, x: Tensor) -> Tensor:
        """Range penalty of this layer's input ``x`` and its θ (add it to
        the loss, weighted, as hilt-train does with weight 5)."""
        return range_penalty(x, self.spec.input_range) + range_penalty(
            self.theta, self.spec.param_range
        )

    def extra_repr(self) -> str:
        return f"device={self.spec.id!r}, n_par={self.spec.n_par}, repeats={self.repeats}, mode={self._mode!r}"


def _concat(parts: "list[Measurement]") -> Measurement:
    """Measurements of consecutive chunks of one batch, as one."""
    import dataclasses

    first = parts[0]
    cat = np.concatenate
    theta_shared = all(p.applied_theta.shape[0] == 1 for p in parts) and len(
        {p.applied_theta.tobytes() for p in parts}
    ) == 1
    return dataclasses.replace(
        first,
        y=cat([p.y for p in parts]),
        repeats=None if first.repeats is None else cat([p.repeats for p in parts], axis=1),  # type: ignore[misc]
        std=None if first.std is None else cat([p.std for p in parts]),  # type: ignore[misc]
        applied_x=cat([p.applied_x for p in parts]),
        applied_theta=first.applied_theta
        if theta_shared
        else cat([np.broadcast_to(p.applied_theta, (p.y.shape[0], p.applied_theta.shape[1])) for p in parts]),
        flags=[f for p in parts for f in p.flags],
        t_start=cat([p.t_start for p in parts]),
        t_end=cat([p.t_end for p in parts]),
        wall_end=parts[-1].wall_end,
    )
