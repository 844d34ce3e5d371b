"""Digital twins written by ``hilt twin fit``, as PyTorch modules.

A twin file is safetensors: the tensors by name, and under the metadata key
``hilt.twin`` a JSON document with the device spec it was fitted for, its
kind (``mlp`` or ``waveform``), hidden widths and fit metrics
(``crates/hilt-train/src/twin/model.rs``). This module computes exactly
what ``crates/hilt-train/src/twin/`` computes, so PAT from Python takes
the same Jacobians as PAT from Rust:

* features (``encode.rs``): for a device with a published
  ``ControlEncoding`` the control vector
  ``clip(input_scale · x[input_index] + θ[param_index], min, max)``, else
  ``[x | θ]``. The clip is ``maximum`` then ``minimum``, as candle's
  ``clamp``: at a value exactly on the limit both sides share the
  gradient, which torch's ``maximum``/``minimum`` also do (``torch.clamp``
  would not).
* MLP body (``body.rs``, ``norm.rs``): standardise the features with
  ``in_mean``/``in_std``, dense layers ``x Wᵀ + b`` with SiLU between
  them, then ``z · out_std + out_mean``.
* waveform body (``wiener.rs``, ``shape.rs``): the control vector held
  ``hold_samples`` samples per element, a causal FIR with ``LEAD`` = 64
  samples of look-ahead
  (``trace[t] = Σ_s held[s] · k[t − s + LEAD]``, lags in ``[0, taps)``,
  ``taps = min(samples, response_memory_samples) + LEAD``), the residual
  nonlinearity ``q = p + Σ_j a_j tanh(w_j p + b_j)``, the device's own time
  bins (RMS ``sqrt(mean q² + 1e-12)`` or mean) and a per-bin gain and
  offset. No output normalisation (the waveform model is fitted in device
  units).

Rust evaluates the FIR as a block matrix built from the kernel; here it is a
``conv1d`` over the held drive: the same sum in another order, so the two
agree to float32 rounding.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hilt.types import ControlEncoding, DeviceSpec, FirmwareIdentity, Range

__all__ = ["Twin", "load_twin", "META_KEY", "LEAD"]

#: Metadata key of the twin's JSON document.
META_KEY = "hilt.twin"
#: Samples of look-ahead of the waveform twin's filter (``shape.rs``).
LEAD = 64
#: The hyperparameter that marks a device driven by a held waveform.
MEMORY_KEY = "response_memory_samples"
BIN_EDGES_KEY = "bin_edges"


def spec_from_json(d: Dict[str, Any]) -> DeviceSpec:
    """A :class:`hilt.DeviceSpec` from the JSON a twin file (or checkpoint)
    stores (hilt-core's serde form)."""
    enc = d.get("encoding")
    fw = d.get("firmware") or {}
    return DeviceSpec(
        id=d["id"],
        kind=d["kind"],
        backend=str(d.get("backend", "")),
        model=d.get("model", ""),
        seed=int(d.get("seed", 0)),
        n_in=int(d["n_in"]),
        input_range=Range(float(d["input_range"]["min"]), float(d["input_range"]["max"])),
        n_par=int(d["n_par"]),
        param_range=Range(float(d["param_range"]["min"]), float(d["param_range"]["max"])),
        n_out=int(d["n_out"]),
        input_unit=d.get("input_unit", ""),
        param_unit=d.get("param_unit", ""),
        output_unit=d.get("output_unit", ""),
        limit_policy=str(d.get("limit_policy", "")),
        max_batch=int(d.get("max_batch", 0)),
        max_repeats=int(d.get("max_repeats", 0)),
        seconds_per_sample=float(d.get("seconds_per_sample", 0.0)),
        hyperparameters={str(k): str(v) for k, v in (d.get("hyperparameters") or {}).items()},
        calibration_id=d.get("calibration_id", ""),
        firmware=FirmwareIdentity(
            fw.get("model", ""), fw.get("serial_number", ""), fw.get("version", "")
        ),
        encoding=None
        if enc is None
        else ControlEncoding(
            enc["layout"],
            [int(i) for i in enc["input_index"]],
            [int(i) for i in enc["param_index"]],
            float(enc["input_scale"]),
            float(enc["control_min"]),
            float(enc["control_max"]),
        ),
        input_step=float(d.get("input_step", 0.0)),
        param_step=float(d.get("param_step", 0.0)),
    )


def _f32(v: float) -> float:
    return float(np.float32(v))


def same_device(a: DeviceSpec, b: DeviceSpec) -> Optional[str]:
    """``None`` if a twin fitted for ``a`` may stand in for ``b`` (kind,
    sizes, encoding, hyperparameters and ranges alike, as ``hilt train``
    checks), else what differs. Floats are compared as the f32 they are on
    the wire."""
    diffs = []
    for f in ("kind", "n_in", "n_par", "n_out", "hyperparameters"):
        if getattr(a, f) != getattr(b, f):
            diffs.append(f)
    for f in ("input_range", "param_range"):
        ra, rb = getattr(a, f), getattr(b, f)
        if (_f32(ra.min), _f32(ra.max)) != (_f32(rb.min), _f32(rb.max)):
            diffs.append(f)
    ea, eb = a.encoding, b.encoding
    if (ea is None) != (eb is None):
        diffs.append("encoding")
    elif ea is not None and eb is not None:
        if (
            ea.layout != eb.layout
            or list(ea.input_index) != list(eb.input_index)
            or list(ea.param_index) != list(eb.param_index)
            or any(
                _f32(getattr(ea, k)) != _f32(getattr(eb, k))
                for k in ("input_scale", "control_min", "control_max")
            )
        ):
            diffs.append("encoding")
    return ", ".join(diffs) if diffs else None


@dataclass(frozen=True)
class WaveShape:
    """A time-domain device's drive and readout (``shape.rs``)."""

    n_controls: int
    hold: int
    bins: List[Tuple[int, int]]
    readout: str  # "rms" or "mean"
    memory: int

    @property
    def samples(self) -> int:
        return self.n_controls * self.hold

    @property
    def taps(self) -> int:
        return min(self.samples, self.memory) + LEAD

    @classmethod
    def for_spec(cls, spec: DeviceSpec) -> Optional["WaveShape"]:
        """``None`` for a device not driven by a held waveform; a
        ``ValueError`` naming device and key for an incomplete one."""
        hp = spec.hyperparameters
        if MEMORY_KEY not in hp:
            return None

        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"device '{spec.id}': hyperparameter '{key}': {why}")

        def count(key: str) -> int:
            if key not in hp:
                raise bad(key, "not published")
            try:
                return int(hp[key].strip())
            except ValueError:
                raise bad(key, f"'{hp[key]}' is not a count") from None

        memory = count(MEMORY_KEY)
        if memory == 0:
            raise bad(MEMORY_KEY, "must be at least 1")
        if spec.encoding is None:
            raise ValueError(f"device '{spec.id}': publishes no drive encoding")
        hold = count("hold_samples")
        readout = hp.get("readout")
        if readout not in ("rms", "mean"):
            raise bad("readout", f"unknown readout '{readout}'")
        n_controls = spec.encoding.n_controls
        n = n_controls * hold
        if hold == 0 or spec.n_out == 0 or spec.n_out > n:
            raise ValueError(f"device '{spec.id}': {spec.n_out} bins of {n} samples")
        bins = []
        for part in hp.get(BIN_EDGES_KEY, "").split(","):
            a, sep, b = part.partition(":")
            if not sep:
                raise bad(BIN_EDGES_KEY, f"'{part}' is not start:end")
            lo, hi = int(a.strip()), int(b.strip())
            if lo >= hi or hi > n:
                raise bad(BIN_EDGES_KEY, f"bin {lo}:{hi} is empty or outside the drive's {n} samples")
            bins.append((lo, hi))
        if len(bins) != spec.n_out:
            raise bad(BIN_EDGES_KEY, f"{len(bins)} bins for {spec.n_out} outputs")
        return cls(n_controls, hold, bins, readout, memory)


class Twin(nn.Module):
    """A fitted twin: ``twin(x, theta)`` predicts the device's outputs
    ``[B, n_out]`` for ``x [B, n_in]`` and ``theta [B or 1, n_par]``,
    differentiably in both (PAT's backward pass).

    The fitted values are buffers, not parameters: a twin stands in for
    the physics and is not trained by the network's optimiser. ``meta``
    is the file's JSON document, ``spec`` the device it was fitted for.
    """

    def __init__(
        self,
        meta: Dict[str, Any],
        tensors: Dict[str, Tensor],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.meta = {k: v for k, v in meta.items() if k != "spec"}
        self.spec = spec_from_json(meta["spec"])
        self.kind = str(meta.get("kind", "mlp"))
        spec = self.spec

        def take(name: str) -> Tensor:
            if name not in tensors:
                raise ValueError(f"twin file: tensor '{name}' missing (expected a twin written by `hilt twin fit`)")
            return tensors[name].to(dtype)

        # Features.
        enc = spec.encoding
        self.encoded = enc is not None
        if enc is not None:
            n_c = enc.n_controls
            p_in = torch.zeros(spec.n_in, n_c, dtype=dtype)
            p_par = torch.zeros(spec.n_par, n_c, dtype=dtype)
            for k in range(n_c):
                if enc.input_index[k] >= 0:
                    p_in[enc.input_index[k], k] = 1.0
                if enc.param_index[k] >= 0:
                    p_par[enc.param_index[k], k] = 1.0
            self.register_buffer("p_in", p_in)
            self.register_buffer("p_par", p_par)
            # As candle does: f64 scalars from the f32 the device published.
            self.scale = float(np.float32(enc.input_scale))
            self.register_buffer("c_min", torch.tensor(_f32(enc.control_min), dtype=dtype))
            self.register_buffer("c_max", torch.tensor(_f32(enc.control_max), dtype=dtype))

        for k in ("in_mean", "in_std", "out_mean", "out_std"):
            self.register_buffer(k, take(k))

        if self.kind == "mlp":
            n_layers = len(meta.get("hidden", [])) + 1
            self.n_layers = n_layers
            for i in range(n_layers):
                self.register_buffer(f"w{i}", take(f"layer{i}.weight"))
                self.register_buffer(f"b{i}", take(f"layer{i}.bias"))
        elif self.kind == "waveform":
            shape = WaveShape.for_spec(spec)
            if shape is None:
                raise ValueError(
                    f"a waveform twin for device '{spec.id}', which takes no waveform "
                    f"(it publishes no '{MEMORY_KEY}')"
                )
            self.shape = shape
            kernel = take("waveform.kernel").reshape(-1)
            if kernel.numel() != shape.taps:
                raise ValueError(
                    f"waveform twin of '{spec.id}': kernel has {kernel.numel()} taps, "
                    f"the device's timing gives {shape.taps}"
                )
            # conv1d correlates; the FIR convolves: flip once here.
            self.register_buffer("kernel_flipped", torch.flip(kernel, [0]).reshape(1, 1, -1))
            self.register_buffer("nl_in", take("waveform.nl_in"))
            self.register_buffer("nl_bias", take("waveform.nl_bias"))
            self.register_buffer("nl_out", take("waveform.nl_out"))
            self.register_buffer("gain", take("waveform.gain"))
            self.register_buffer("offset", take("waveform.offset"))
            n = shape.samples
            bin_m = torch.zeros(n, len(shape.bins), dtype=dtype)
            for j, (a, b) in enumerate(shape.bins):
                bin_m[a:b, j] = 1.0 / float(np.float32(b - a))
            self.register_buffer("bin", bin_m)
        else:
            raise ValueError(f"twin file: unknown twin kind '{self.kind}'")

    # -- the pieces ---------------------------------------------------------

    def features(self, x: Tensor, theta: Tensor) -> Tensor:
        """The twin's input features for ``x`` and ``theta`` (see module doc)."""
        if self.encoded:
            xi = (x @ self.p_in) * self.scale
            th = theta @ self.p_par
            u = xi + th
            return torch.minimum(torch.maximum(u, self.c_min), self.c_max)
        th = theta.expand(x.shape[0], theta.shape[1])
        return torch.cat([x, th], dim=1)

    def forward_features(self, f: Tensor) -> Tensor:
        """Outputs in the device's units for features ``f``."""
        if self.kind == "mlp":
            h = (f - self.in_mean) / self.in_std
            for i in range(self.n_layers):
                h = h @ getattr(self, f"w{i}").t() + getattr(self, f"b{i}")
                if i + 1 < self.n_layers:
                    h = F.silu(h)
            return h * self.out_std + self.out_mean
        return self._waveform(f)

    def _waveform(self, u: Tensor) -> Tensor:
        s = self.shape
        b = u.shape[0]
        held = u.repeat_interleave(s.hold, dim=1)  # [B, samples]
        taps = s.taps
        padded = F.pad(held.unsqueeze(1), (taps - 1 - LEAD, LEAD))
        trace = F.conv1d(padded, self.kernel_flipped).reshape(b, s.samples)
        flat = trace.reshape(b * s.samples, 1)
        h = torch.tanh(flat @ self.nl_in + self.nl_bias)
        q = (flat + h @ self.nl_out).reshape(b, s.samples)
        if s.readout == "rms":
            y = torch.sqrt((q * q) @ self.bin + 1e-12)
        else:
            y = q @ self.bin
        return y * self.gain + self.offset

    def forward(self, x: Tensor, theta: Tensor) -> Tensor:  # noqa: D102 - class doc
        if x.dim() != 2 or theta.dim() != 2:
            raise ValueError(f"twin: x and theta must be 2-D, got {tuple(x.shape)} and {tuple(theta.shape)}")
        if x.shape[1] != self.spec.n_in or theta.shape[1] != self.spec.n_par:
            raise ValueError(
                f"twin of '{self.spec.id}' takes x [B, {self.spec.n_in}] and theta [B or 1, "
                f"{self.spec.n_par}], got {tuple(x.shape)} and {tuple(theta.shape)}"
            )
        return self.forward_features(self.features(x, theta))

    def extra_repr(self) -> str:
        return f"device={self.spec.id!r}, kind={self.kind!r}, n_in={self.spec.n_in}, n_par={self.spec.n_par}, n_out={self.spec.n_out}"


def load_twin(
    path: Union[str, "os.PathLike[str]"], dtype: torch.dtype = torch.float32
) -> Twin:
    """Load a ``.safetensors`` twin written by ``hilt twin fit`` (MLP or
    waveform) as a :class:`Twin`. ``dtype`` is the dtype it computes in
    (float32, as Rust; float64 for checking)."""
    from safetensors import safe_open

    p = os.fspath(path)
    with safe_open(p, framework="pt") as f:
        md = f.metadata() or {}
        if META_KEY not in md:
            raise ValueError(f"{p}: no '{META_KEY}' metadata (expected a twin written by `hilt twin fit`)")
        meta = json.loads(md[META_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return Twin(meta, tensors, dtype=dtype)
