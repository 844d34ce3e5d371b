"""A held device: execute batches, stream them, release the lease.

Measuring needs a lease: the daemon hands a device to one holder at a time
(FIFO for the others) and takes it back when the holder's TTL passes
without a sign of life, so a crashed trainer never blocks a rig for long.
While a :class:`Lease` lives, a background thread sends a keepalive every
third of the granted TTL (as the Rust client does), and leaving its
``with`` block releases it, also when the block raises.
"""

from __future__ import annotations

import threading
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Tuple, Union

import grpc
import numpy.typing as npt

from hilt._proto import hilt_pb2
from hilt.errors import (
    HiltError,
    InvalidArgument,
    LeaseError,
    StreamClosed,
    code_from_int,
    error_for,
    from_rpc_error,
)
from hilt.types import Batch, DeviceSpec, LeaseInfo, Measurement, _time

if TYPE_CHECKING:  # pragma: no cover
    from hilt.client import Client

__all__ = ["Lease", "MeasurementStream"]

BatchLike = Union[Batch, Tuple[npt.ArrayLike, npt.ArrayLike]]


class Lease:
    """A leased device (made by :meth:`hilt.Client.lease`).

    ``execute`` measures one batch and waits for it; ``stream`` pipelines
    many, at most ``window`` in flight, answers in order. ``release`` (or
    the end of the ``with`` block) frees the device. The lease id is a
    secret that authorises measuring: it is never shown by ``repr``.
    """

    def __init__(self, client: "Client", info: LeaseInfo) -> None:
        self._client = client
        self._info = info
        self._released = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lost: Optional[HiltError] = None
        self._spec: Optional[DeviceSpec] = None
        #: Keepalives sent and answered (for tests and the curious).
        self.keepalives = 0
        self._thread = threading.Thread(
            target=self._keepalive, name=f"hilt-keepalive-{info.device_id}", daemon=True
        )
        self._thread.start()

    @classmethod
    def _acquire(
        cls, client: "Client", device: str, ttl: float, wait: Optional[float]
    ) -> "Lease":
        if ttl < 0 or (wait is not None and wait < 0):
            raise InvalidArgument("ttl and wait must not be negative")
        req = hilt_pb2.AcquireLeaseRequest(
            device_id=device, ttl_seconds=float(ttl), wait_seconds=float(wait or 0.0)
        )
        # The daemon answers DEADLINE_EXCEEDED itself after `wait`; the
        # call's own deadline leaves it room to say so.
        timeout = None if wait is None else wait + 10.0
        r = client._call(
            client.stub.AcquireLease, req, timeout=timeout, lease=True, use_default_timeout=False
        )
        info = LeaseInfo(r.lease_id, r.device_id, r.ttl_seconds, _time(r.expires))
        if not info.ttl > 0:
            # A TTL that is no duration is a bad answer: hand the device
            # back rather than keep it alive at an absurd rate.
            client._call(
                client.stub.ReleaseLease,
                hilt_pb2.ReleaseLeaseRequest(lease_id=info.lease_id),
                lease=True,
            )
            raise LeaseError(f"hiltd granted a lease of {device!r} with TTL {info.ttl}; released it")
        return cls(client, info)

    # -- what it is -------------------------------------------------------

    @property
    def device(self) -> str:
        """The leased device's id."""
        return self._info.device_id

    @property
    def ttl(self) -> float:
        """The TTL hiltd granted (its default when 0 was asked), seconds."""
        return self._info.ttl

    @property
    def lease_id(self) -> str:
        """The lease id: a secret authorising ``execute`` and ``stream``."""
        return self._info.lease_id

    @property
    def spec(self) -> DeviceSpec:
        """The device's spec (described once, on first use)."""
        if self._spec is None:
            self._spec = self._client.describe(self.device).spec
        return self._spec

    @property
    def lost(self) -> Optional[HiltError]:
        """Why the keepalive found the lease gone (expired, broken by an
        admin), or ``None`` while it is held."""
        return self._lost

    @property
    def released(self) -> bool:
        return self._released

    def __repr__(self) -> str:
        state = "released" if self._released else ("lost" if self._lost else "held")
        return f"hilt.Lease({self.device!r}, ttl={self.ttl:g}, {state})"

    # -- keepalive --------------------------------------------------------

    def _keepalive(self) -> None:
        period = max(self.ttl / 3.0, 0.001)
        req = hilt_pb2.KeepAliveRequest(lease_id=self._info.lease_id)
        stub, md = self._client.stub, self._client.metadata
        while not self._stop.wait(period):
            try:
                stub.KeepAlive(req, timeout=max(period, 1.0), metadata=md)
                self.keepalives += 1
            except grpc.RpcError as e:
                if self._stop.is_set():
                    return
                # Lost for good (expired, released, broken): the next call
                # says so too. Anything else (a dropped connection) is
                # retried at the next tick, inside the TTL.
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self._lost = from_rpc_error(e, lease=True)
                    return
            except ValueError:
                # The channel was closed under us (client.close()).
                return

    # -- measuring --------------------------------------------------------

    def execute(
        self,
        x: npt.ArrayLike,
        theta: npt.ArrayLike,
        repeats: int = 1,
        return_repeats: bool = False,
        timeout: Optional[float] = None,
    ) -> Measurement:
        """Measure one batch and wait for the answer.

        ``x`` is ``[B, n_in]`` (a 1-D x is one row), ``theta`` ``[B, n_par]``
        (one per row) or ``[n_par]``/``[1, n_par]`` (shared). Each row is
        measured ``repeats`` times; ``return_repeats`` also returns every
        repeat. Shapes, NaN and limits are checked by the daemon, which
        answers :class:`hilt.InvalidArgument`, :class:`hilt.OutOfRange` or
        :class:`hilt.ResourceExhausted` naming field and index.
        """
        batch = Batch(x, theta, repeats, return_repeats)._to_pb()
        req = hilt_pb2.ExecuteRequest(
            device_id=self.device, lease_id=self._info.lease_id, batch=batch
        )
        m = self._client._call(self._client.stub.Execute, req, timeout=timeout)
        return Measurement._from_pb(m)

    def stream(
        self,
        batches: Iterable[BatchLike],
        window: int = 8,
        repeats: int = 1,
        return_repeats: bool = False,
    ) -> "MeasurementStream":
        """Measure many batches pipelined: at most ``window`` (1..=256) are
        in flight, so the device always has the next one queued, and the
        answers come back in the order sent.

        ``batches`` yields ``(x, theta)`` pairs (measured ``repeats`` times
        each) or :class:`hilt.Batch` values (with their own repeats); it is
        read lazily, never more than ``window`` ahead of what has been
        answered. The first batch the daemon refuses ends the stream with
        its exception, after every measurement before it was yielded.
        """
        if not 1 <= int(window) <= 256:
            raise InvalidArgument(f"window: {window} is outside 1..=256")
        return MeasurementStream(self, batches, int(window), repeats, return_repeats)

    # -- release ----------------------------------------------------------

    def release(self) -> None:
        """Stop the keepalive and free the device now. Raises a
        :class:`hilt.LeaseError` if the daemon did not accept (the lease
        had expired, or the daemon is gone). Releasing twice is a no-op."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self._stop.set()
        self._thread.join(timeout=5.0)
        req = hilt_pb2.ReleaseLeaseRequest(lease_id=self._info.lease_id)
        self._client._call(self._client.stub.ReleaseLease, req, timeout=10.0, lease=True)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.release()
        except HiltError as e:
            if exc_type is None:
                raise
            # Never hide the exception that ended the block; the TTL frees
            # the device if the release did not.
            warnings.warn(f"hilt: releasing the lease of {self.device!r} failed: {e}", stacklevel=2)

    def __del__(self) -> None:
        # Best effort, as the Rust client's Drop: a lease dropped without
        # release is handed back; if that fails the TTL frees the device.
        try:
            if not self._released:
                self._released = True
                self._stop.set()
                req = hilt_pb2.ReleaseLeaseRequest(lease_id=self._info.lease_id)
                self._client.stub.ReleaseLease(req, timeout=2.0, metadata=self._client.metadata)
        except Exception:  # noqa: BLE001 - interpreter shutdown, closed channel
            pass


class MeasurementStream(Iterator[Measurement]):
    """An open ``Stream`` call: iterate for the measurements, in order.

    A window of ``window`` permits bounds the batches sent but not yet
    answered: the sender (gRPC's request thread) takes one before sending a
    batch, the iterator gives it back when that batch's answer is yielded.
    ``close()`` (or leaving a ``with`` block, or dropping the iterator)
    cancels the call.
    """

    def __init__(
        self,
        lease: Lease,
        batches: Iterable[BatchLike],
        window: int,
        repeats: int,
        return_repeats: bool,
    ) -> None:
        self._lease = lease
        self._batches = iter(batches)
        self._window = window
        self._credit = threading.Semaphore(window)
        self._stop = threading.Event()
        self._repeats = repeats
        self._return_repeats = return_repeats
        self._sent = 0
        self._next_seq = 0
        self._feed_error: Optional[BaseException] = None
        self._finished = False
        client = lease._client
        self._call = client.stub.Stream(self._requests(), metadata=client.metadata)

    def _requests(self) -> Iterator[hilt_pb2.StreamRequest]:
        """What gRPC's sender thread sends: the open, then one batch per
        credit. An error raised by the caller's iterable (or its arrays) is
        kept and raised by ``__next__`` once the batches before it are
        answered."""
        yield hilt_pb2.StreamRequest(
            open=hilt_pb2.StreamOpen(
                device_id=self._lease.device,
                lease_id=self._lease.lease_id,
                window=self._window,
            )
        )
        seq = 0
        while not self._stop.is_set():
            while not self._credit.acquire(timeout=0.1):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                return
            try:
                item = next(self._batches)
            except StopIteration:
                return
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                self._feed_error = e
                return
            try:
                b = item if isinstance(item, Batch) else Batch(
                    item[0], item[1], self._repeats, self._return_repeats
                )
                pb = b._to_pb()
            except BaseException as e:  # noqa: BLE001
                self._feed_error = e
                return
            self._sent = seq + 1
            yield hilt_pb2.StreamRequest(batch=hilt_pb2.StreamBatch(seq=seq, batch=pb))
            seq += 1

    def __iter__(self) -> "MeasurementStream":
        return self

    def __next__(self) -> Measurement:
        if self._finished:
            raise StopIteration
        try:
            r = next(self._call)
        except StopIteration:
            self._finished = True
            if self._feed_error is not None:
                raise self._feed_error
            if self._next_seq < self._sent:
                raise StreamClosed(
                    f"the stream ended after {self._next_seq} of {self._sent} batches were answered"
                ) from None
            raise
        except grpc.RpcError as e:
            self._finished = True
            self._stop.set()
            raise from_rpc_error(e) from None
        if r.seq != self._next_seq:
            self.close()
            raise StreamClosed(f"answer for batch {r.seq} arrived where {self._next_seq} was due")
        self._next_seq += 1
        which = r.WhichOneof("result")
        if which == "error":
            self.close()
            raise error_for(code_from_int(r.error.code), r.error.message)
        if which != "measurement":
            self.close()
            raise StreamClosed(f"answer for batch {r.seq} carries no result")
        self._credit.release()
        return Measurement._from_pb(r.measurement)

    def close(self) -> None:
        """Cancel the stream (batches in flight are dropped)."""
        self._finished = True
        self._stop.set()
        self._call.cancel()
        self._credit.release()

    def __enter__(self) -> "MeasurementStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._finished:
                self.close()
        except Exception:  # noqa: BLE001
            pass
