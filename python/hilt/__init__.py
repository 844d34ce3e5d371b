"""hilt: a Python client for hiltd, the daemon serving physical-neural-network
rigs over gRPC, and (``hilt.torch``) a PyTorch layer that trains on them with
Physics-Aware Training.

    import hilt
    client = hilt.Client("127.0.0.1:50051")
    with client.lease("shg-readout", ttl=30) as dev:
        m = dev.execute(x, theta, repeats=2)      # m.y, m.applied_x, ...

numpy in, numpy out; every failure is a :class:`hilt.HiltError` subclass
named after its gRPC code, carrying the daemon's message.
"""

from hilt.client import Client, Watch
from hilt.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    HiltError,
    Internal,
    InvalidArgument,
    LeaseError,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    StreamClosed,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from hilt.lease import Lease, MeasurementStream
from hilt.types import (
    Batch,
    ControlEncoding,
    DeviceDescription,
    DeviceEvent,
    DeviceSpec,
    DeviceStatus,
    FirmwareIdentity,
    LeaseInfo,
    Measurement,
    Range,
    SampleFlags,
    ServerInfo,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Watch",
    "Lease",
    "MeasurementStream",
    "Batch",
    "ControlEncoding",
    "DeviceDescription",
    "DeviceEvent",
    "DeviceSpec",
    "DeviceStatus",
    "FirmwareIdentity",
    "LeaseInfo",
    "Measurement",
    "Range",
    "SampleFlags",
    "ServerInfo",
    "HiltError",
    "LeaseError",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "StreamClosed",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
]
