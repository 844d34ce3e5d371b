"""Exceptions carrying hiltd's gRPC code and message.

hiltd chooses its status codes so that a client can act on the code alone
(``proto/hilt/v1/hilt.proto`` lists them): fix the input on
``INVALID_ARGUMENT`` or ``OUT_OF_RANGE``, split the batch on
``RESOURCE_EXHAUSTED``, retry on ``UNAVAILABLE``, take a new lease on a
lease failure. Each code is therefore an exception class of its own, and
the daemon's message (which names the offending field and index) is kept
verbatim. No call of this package lets a bare ``grpc.RpcError`` escape.

Lease failures get one more axis: :class:`LeaseError`. Everything that goes
wrong acquiring, keeping or releasing a lease, and a batch refused because
its lease is gone (``FAILED_PRECONDITION "lease_id: ..."``), is raised as
a class deriving from both ``LeaseError`` and the code's class, so
``except hilt.LeaseError`` and ``except hilt.DeadlineExceeded`` both catch
a lease that was not granted in time.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc

__all__ = [
    "HiltError",
    "LeaseError",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    "StreamClosed",
    "error_for",
    "from_rpc_error",
]


class HiltError(Exception):
    """A failure reported by hiltd (or by the transport to it).

    ``code`` is the gRPC status code, ``message`` the daemon's message as
    sent (it names the field and index at fault).
    """

    #: The status code this class stands for (subclasses set it).
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.message: str = message
        super().__init__(f"{self.code.name}: {message}")


class LeaseError(HiltError):
    """A lease could not be acquired, kept alive or released, or a batch was
    refused because its lease is missing, expired, released or broken.

    Raised as a class that also derives from the code's class (e.g.
    ``FailedPrecondition``), so both ``except`` clauses work.
    """


class Cancelled(HiltError):
    """The call was cancelled (by this client, e.g. a stream left early)."""

    default_code = grpc.StatusCode.CANCELLED


class Unknown(HiltError):
    """A status the daemon did not classify."""

    default_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(HiltError):
    """Malformed request: shapes, NaN/Inf, tensor bytes, repeats, TTL, window."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(HiltError):
    """The call's deadline (or a lease's ``wait``) passed first."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(HiltError):
    """Unknown device (the message lists those served)."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(HiltError):
    """Not used by hiltd; kept so every code has a class."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(HiltError):
    """The token's role or device list does not cover the call."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(HiltError):
    """Batch or repeats above the device maximum, message too large, or the
    lease's waiting line is full."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(HiltError):
    """No valid lease, or the device's interlock budget would be exceeded."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(HiltError):
    """The device was reset while the batch waited."""

    default_code = grpc.StatusCode.ABORTED


class OutOfRange(HiltError):
    """A value outside the device's hard limits (limit policy ``reject``)."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(HiltError):
    """The daemon does not offer this call (an older hiltd)."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(HiltError):
    """A fault inside the daemon, never the caller's input."""

    default_code = grpc.StatusCode.INTERNAL


class Unavailable(HiltError):
    """No connection, device not ready (connecting, faulted), daemon halted
    or shutting down: worth retrying later."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(HiltError):
    """Not used by hiltd; kept so every code has a class."""

    default_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(HiltError):
    """No token, or one the daemon does not know."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class StreamClosed(Unavailable):
    """A ``Stream`` ended before every batch sent was answered."""


_BY_CODE: Dict[grpc.StatusCode, Type[HiltError]] = {
    c.default_code: c
    for c in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}

_LEASE_VARIANTS: Dict[Type[HiltError], Type[HiltError]] = {}


def _lease_variant(base: Type[HiltError]) -> Type[HiltError]:
    """``LeaseError`` combined with ``base`` (made once per code)."""
    cls = _LEASE_VARIANTS.get(base)
    if cls is None:
        cls = type(
            f"Lease{base.__name__}",
            (LeaseError, base),
            {"__doc__": f"A lease failure reported as {base.default_code.name}.",
             "__module__": __name__},
        )
        _LEASE_VARIANTS[base] = cls
    return cls


def error_for(code: grpc.StatusCode, message: str, lease: bool = False) -> HiltError:
    """The exception for ``code`` with the daemon's ``message``.

    ``lease`` marks a failure of a lease call (acquire, keepalive, release);
    a ``FAILED_PRECONDITION`` about the lease id is a lease failure anywhere.
    """
    base = _BY_CODE.get(code, Unknown)
    if lease or (code == grpc.StatusCode.FAILED_PRECONDITION and message.startswith("lease_id")):
        return _lease_variant(base)(message, code)
    return base(message, code)


def code_from_int(value: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a numeric ``google.rpc.Code`` (as a stream's
    in-band ``BatchError`` carries it)."""
    for c in grpc.StatusCode:
        if c.value[0] == value:
            return c
    return grpc.StatusCode.UNKNOWN


def from_rpc_error(e: grpc.RpcError, lease: bool = False) -> HiltError:
    """The mapped exception for a failed gRPC call."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return error_for(code, details or str(e), lease=lease)

