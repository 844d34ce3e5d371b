"""What hiltd says, as plain Python values with numpy arrays.

The wire messages (``proto/hilt/v1``) are converted once, here, so the rest
of a user's code never touches protobuf. Tensors travel as packed
little-endian f32 bytes and a shape: one ``np.frombuffer`` each way, no
per-element loop (a 256 x 64 batch is one copy).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import numpy.typing as npt

from hilt._proto import device_pb2, hilt_pb2, tensor_pb2

__all__ = [
    "Range",
    "FirmwareIdentity",
    "ControlEncoding",
    "DeviceSpec",
    "DeviceStatus",
    "DeviceDescription",
    "DeviceEvent",
    "ServerInfo",
    "SampleFlags",
    "Measurement",
    "Batch",
    "LeaseInfo",
]

F32 = npt.NDArray[np.float32]
_LE_F32 = np.dtype("<f4")


def tensor_to_numpy(t: tensor_pb2.Tensor, what: str) -> F32:
    """A wire tensor as a float32 array of its shape (native byte order).

    A payload whose length does not match the shape is a malformed answer,
    never silently reshaped.
    """
    shape = tuple(int(d) for d in t.shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if len(t.data) != 4 * n:
        raise ValueError(
            f"malformed answer from hiltd: {what} has shape {list(shape)} "
            f"({n} values) but {len(t.data)} bytes"
        )
    # One copy out of the message's immutable bytes: the caller gets an
    # ordinary writable array (torch.from_numpy warns on read-only ones).
    a = np.frombuffer(t.data, dtype=_LE_F32).reshape(shape)
    return a.astype(np.float32, copy=True)


def numpy_to_tensor(a: npt.ArrayLike) -> tensor_pb2.Tensor:
    """An array as a wire tensor (converted to little-endian f32 once)."""
    arr = np.ascontiguousarray(a, dtype=_LE_F32)
    return tensor_pb2.Tensor(shape=list(arr.shape), data=arr.tobytes())


def _time(ts: object) -> Optional[_dt.datetime]:
    """A protobuf Timestamp as an aware UTC datetime (``None`` if unset)."""
    if ts is None or (getattr(ts, "seconds", 0) == 0 and getattr(ts, "nanos", 0) == 0):
        return None
    return _dt.datetime.fromtimestamp(
        ts.seconds + ts.nanos * 1e-9, tz=_dt.timezone.utc  # type: ignore[attr-defined]
    )


_BACKEND = {0: "unspecified", 1: "sim", 2: "serial", 3: "replay"}
_POLICY = {0: "unspecified", 1: "reject", 2: "clamp"}
_STATE = {
    0: "unspecified",
    1: "connecting",
    2: "ready",
    3: "busy",
    4: "faulted",
    5: "reconnecting",
}
_EVENT = {
    0: "unspecified",
    1: "snapshot",
    2: "state_changed",
    3: "lease_changed",
    4: "calibration_changed",
    5: "resync",
}


@dataclass(frozen=True)
class Range:
    """Closed interval ``[min, max]`` in the device's physical units."""

    min: float
    max: float

    @property
    def width(self) -> float:
        return self.max - self.min


@dataclass(frozen=True)
class FirmwareIdentity:
    """What produces the measurements (board firmware, or the simulator)."""

    model: str
    serial_number: str
    version: str

    @classmethod
    def _from_pb(cls, m: device_pb2.FirmwareIdentity) -> "FirmwareIdentity":
        return cls(m.model, m.serial_number, m.version)


@dataclass(frozen=True)
class ControlEncoding:
    """How x and θ become the control vector a channelised device drives:
    ``m_k = clip(input_scale * x[input_index[k]] + theta[param_index[k]],
    control_min, control_max)``, a term absent where its index is -1. A
    twin is fitted on this vector (``hilt.torch`` rebuilds it
    differentiably)."""

    layout: str
    input_index: List[int]
    param_index: List[int]
    input_scale: float
    control_min: float
    control_max: float

    @property
    def n_controls(self) -> int:
        return len(self.input_index)

    def compose(self, x: npt.ArrayLike, theta: npt.ArrayLike) -> F32:
        """The control vectors ``[B, n_controls]`` for ``x [B, n_in]`` and
        ``theta [B or 1, n_par]``, as the device composes them."""
        x2 = np.atleast_2d(np.asarray(x, dtype=np.float32))
        t2 = np.atleast_2d(np.asarray(theta, dtype=np.float32))
        ii = np.asarray(self.input_index)
        pi = np.asarray(self.param_index)
        out = np.zeros((x2.shape[0], self.n_controls), dtype=np.float32)
        has_x, has_t = ii >= 0, pi >= 0
        out[:, has_x] += np.float32(self.input_scale) * x2[:, ii[has_x]]
        out[:, has_t] += t2[:, pi[has_t]]
        return np.clip(out, self.control_min, self.control_max)


@dataclass(frozen=True)
class DeviceSpec:
    """Everything a device publishes about itself: sizes, hard limits with
    units, limit policy, batch and repeat maxima, encoding and the
    kind-specific hyperparameters (time bins, response memory, ...)."""

    id: str
    kind: str
    backend: str
    model: str
    seed: int
    n_in: int
    input_range: Range
    n_par: int
    param_range: Range
    n_out: int
    input_unit: str
    param_unit: str
    output_unit: str
    limit_policy: str
    max_batch: int
    max_repeats: int
    seconds_per_sample: float
    hyperparameters: Dict[str, str]
    calibration_id: str
    firmware: FirmwareIdentity
    encoding: Optional[ControlEncoding]
    input_step: float
    param_step: float

    @classmethod
    def _from_pb(cls, m: device_pb2.DeviceSpec) -> "DeviceSpec":
        enc = None
        if m.HasField("encoding"):
            e = m.encoding
            enc = ControlEncoding(
                e.layout,
                list(e.input_index),
                list(e.param_index),
                e.input_scale,
                e.control_min,
                e.control_max,
            )
        return cls(
            id=m.id,
            kind=m.kind,
            backend=_BACKEND.get(m.backend, str(m.backend)),
            model=m.model,
            seed=m.seed,
            n_in=m.n_in,
            input_range=Range(m.input_range.min, m.input_range.max),
            n_par=m.n_par,
            param_range=Range(m.param_range.min, m.param_range.max),
            n_out=m.n_out,
            input_unit=m.input_unit,
            param_unit=m.param_unit,
            output_unit=m.output_unit,
            limit_policy=_POLICY.get(m.limit_policy, str(m.limit_policy)),
            max_batch=m.max_batch,
            max_repeats=m.max_repeats,
            seconds_per_sample=m.seconds_per_sample,
            hyperparameters=dict(m.hyperparameters),
            calibration_id=m.calibration_id,
            firmware=FirmwareIdentity._from_pb(m.firmware),
            encoding=enc,
            input_step=m.input_step,
            param_step=m.param_step,
        )


@dataclass(frozen=True)
class DeviceStatus:
    """A device's state now: ``ready``, ``busy``, ``connecting``,
    ``reconnecting`` or ``faulted`` (with ``detail``), whether it is
    leased, how many wait, and what it has measured."""

    device_id: str
    state: str
    calibration_id: str
    leased: bool
    waiters: int
    batches_done: int
    samples_done: int
    detail: str
    firmware: FirmwareIdentity
    halted: str
    recording_error: str

    @classmethod
    def _from_pb(cls, m: device_pb2.DeviceStatus) -> "DeviceStatus":
        return cls(
            device_id=m.device_id,
            state=_STATE.get(m.state, str(m.state)),
            calibration_id=m.calibration_id,
            leased=m.leased,
            waiters=m.waiters,
            batches_done=m.batches_done,
            samples_done=m.samples_done,
            detail=m.detail,
            firmware=FirmwareIdentity._from_pb(m.firmware),
            halted=m.halted,
            recording_error=m.recording_error,
        )


@dataclass(frozen=True)
class DeviceDescription:
    """``describe``'s answer: the spec and the status, together."""

    spec: DeviceSpec
    status: DeviceStatus


@dataclass(frozen=True)
class DeviceEvent:
    """One ``watch`` event: ``snapshot`` first, then ``state_changed``,
    ``lease_changed``, ``calibration_changed``, or ``resync`` (``missed``
    events were dropped because the watcher fell behind; ``status`` is
    current again)."""

    kind: str
    status: DeviceStatus
    time: Optional[_dt.datetime]
    missed: int

    @classmethod
    def _from_pb(cls, m: hilt_pb2.DeviceEvent) -> "DeviceEvent":
        return cls(
            kind=_EVENT.get(m.kind, str(m.kind)),
            status=DeviceStatus._from_pb(m.status),
            time=_time(m.time),
            missed=m.missed,
        )


@dataclass(frozen=True)
class ServerInfo:
    """hiltd's version and what measures behind each device."""

    version: str
    git_revision: str
    started: Optional[_dt.datetime]
    firmware: Dict[str, FirmwareIdentity]

    @classmethod
    def _from_pb(cls, m: hilt_pb2.ServerInfo) -> "ServerInfo":
        return cls(
            version=m.version,
            git_revision=m.git_revision,
            started=_time(m.started),
            firmware={d.device_id: FirmwareIdentity._from_pb(d.firmware) for d in m.devices},
        )


@dataclass(frozen=True)
class SampleFlags:
    """Per row: a detector saturated in some repeat; an input, parameter or
    control element was clamped to its limit."""

    saturated: bool
    clamped: bool


@dataclass(frozen=True)
class Measurement:
    """One measured batch.

    ``y`` is the mean over repeats ``[B, n_out]``; ``repeats`` every repeat
    ``[R, B, n_out]`` when asked for (``return_repeats``), ``std`` their
    spread when ``R > 1``. ``applied_x`` and ``applied_theta`` are the
    values the device really applied, after clamping and quantisation: the
    point where PAT evaluates its twin. Timestamps: ``t_start``/``t_end``
    per row on the device clock (seconds; virtual for simulators),
    ``wall_start``/``wall_end`` for the batch.
    """

    y: F32
    repeats: Optional[F32]
    std: Optional[F32]
    applied_x: F32
    applied_theta: F32
    flags: List[SampleFlags]
    t_start: npt.NDArray[np.float64]
    t_end: npt.NDArray[np.float64]
    wall_start: Optional[_dt.datetime]
    wall_end: Optional[_dt.datetime]
    calibration_id: str
    device_id: str

    @property
    def saturated(self) -> npt.NDArray[np.bool_]:
        """Per-row saturation flags as an array."""
        return np.array([f.saturated for f in self.flags], dtype=bool)

    @property
    def clamped(self) -> npt.NDArray[np.bool_]:
        """Per-row clamp flags as an array."""
        return np.array([f.clamped for f in self.flags], dtype=bool)

    @classmethod
    def _from_pb(cls, m: device_pb2.Measurement) -> "Measurement":
        return cls(
            y=tensor_to_numpy(m.y, "y"),
            repeats=tensor_to_numpy(m.y_repeats, "y_repeats") if m.HasField("y_repeats") else None,
            std=tensor_to_numpy(m.y_std, "y_std") if m.HasField("y_std") else None,
            applied_x=tensor_to_numpy(m.applied_x, "applied_x"),
            applied_theta=tensor_to_numpy(m.applied_theta, "applied_theta"),
            flags=[SampleFlags(f.saturated, f.clamped) for f in m.flags],
            t_start=np.asarray(m.t_start, dtype=np.float64),
            t_end=np.asarray(m.t_end, dtype=np.float64),
            wall_start=_time(m.wall_start),
            wall_end=_time(m.wall_end),
            calibration_id=m.calibration_id,
            device_id=m.device_id,
        )


@dataclass
class Batch:
    """A batch to measure: ``x [B, n_in]`` and ``theta [B or 1, n_par]``
    (a 1-D θ is shared by every row, a 1-D x is one row), each row measured
    ``repeats`` times (the whole batch swept once per repeat, so drift
    averages out)."""

    x: npt.ArrayLike
    theta: npt.ArrayLike
    repeats: int = 1
    return_repeats: bool = False

    def _to_pb(self) -> device_pb2.Batch:
        x = np.asarray(self.x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        t = np.asarray(self.theta, dtype=np.float32)
        if t.ndim == 1:
            t = t[None, :]
        return device_pb2.Batch(
            x=numpy_to_tensor(x),
            theta=numpy_to_tensor(t),
            repeats=int(self.repeats),
            return_repeats=bool(self.return_repeats),
        )


@dataclass(frozen=True)
class LeaseInfo:
    """What the daemon granted: the lease id (a secret), its device and TTL."""

    lease_id: str
    device_id: str
    ttl: float
    expires: Optional[_dt.datetime] = field(default=None)

