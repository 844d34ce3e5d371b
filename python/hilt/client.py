"""A connection to one hiltd: discovery, leases, watching.

Mirrors the Rust ``hilt-client``: one HTTP/2 channel per client, messages up
to 256 MiB each way, TLS with a lab CA (and a client certificate for mTLS)
for ``https://`` addresses, and a token sent as ``authorization: Bearer
<token>`` on every call. Every failure is a :mod:`hilt.errors` exception.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar, Union

import grpc

from hilt._proto import hilt_pb2, hilt_pb2_grpc
from hilt.errors import InvalidArgument, Unavailable, from_rpc_error
from hilt.lease import Lease
from hilt.types import DeviceDescription, DeviceEvent, DeviceSpec, DeviceStatus, ServerInfo

__all__ = ["Client", "Watch"]

#: Largest message either way, as the Rust client allows.
MAX_MESSAGE_BYTES = 256 << 20

PemSource = Union[str, bytes, "os.PathLike[str]"]
T = TypeVar("T")


def _pem(value: Optional[PemSource], what: str) -> Optional[bytes]:
    """PEM bytes from bytes, PEM text, or a path to a PEM file."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    text = os.fspath(value)
    if "-----BEGIN" in text:
        return text.encode()
    try:
        return Path(text).read_bytes()
    except OSError as e:
        raise InvalidArgument(f"{what}: cannot read '{text}': {e}") from None


def _split_target(target: str) -> Tuple[str, bool]:
    """``(host:port, tls)`` from ``host:port``, ``http://…`` or ``https://…``."""
    t = target.strip()
    if t.startswith("https://"):
        return t[len("https://"):].rstrip("/"), True
    if t.startswith("http://"):
        return t[len("http://"):].rstrip("/"), False
    if "://" in t:
        raise InvalidArgument(f"server address '{target}': only http:// and https:// are known")
    return t, False


class Client:
    """A connection to hiltd.

    ``target`` is ``host:port`` or ``http://host:port`` (plaintext, the lab
    PC's loopback) or ``https://host:port`` (TLS; ``ca`` is the lab CA that
    signed hiltd's certificate, as a path or PEM; ``client_cert`` and
    ``client_key`` for a daemon that requires client certificates;
    ``domain`` when the certificate names a host other than the one
    dialled). ``token`` (or the environment variable ``HILT_TOKEN``) is sent
    with every call. The constructor waits up to ``connect_timeout``
    seconds for the connection and raises :class:`hilt.Unavailable` if the
    daemon cannot be reached, so a wrong address fails here and not at the
    first measurement. ``timeout`` is the default deadline of unary calls
    (``None``: none; a lease wait is bounded by ``lease(wait=…)`` instead).

    A client is thread-safe; close it (or use it as a context manager)
    when done.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        ca: Optional[PemSource] = None,
        token: Optional[str] = None,
        client_cert: Optional[PemSource] = None,
        client_key: Optional[PemSource] = None,
        domain: Optional[str] = None,
        connect_timeout: float = 5.0,
        timeout: Optional[float] = 60.0,
    ) -> None:
        address, tls = _split_target(target)
        self.target = target
        self.timeout = timeout
        if token is None:
            token = os.environ.get("HILT_TOKEN")
        self._metadata: Tuple[Tuple[str, str], ...] = ()
        if token:
            token = token.strip()
            if not token.isascii() or not token.isprintable():
                raise InvalidArgument("token: must be printable ASCII (as `hilt token new` makes them)")
            self._metadata = (("authorization", f"Bearer {token}"),)
        options: List[Tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        host = address.rsplit(":", 1)[0].strip("[]")
        if host in ("127.0.0.1", "localhost", "::1"):
            # No proxy serves the loopback: an http_proxy in the
            # environment would otherwise send the lab PC's own daemon
            # through it.
            options.append(("grpc.enable_http_proxy", 0))
        if (client_cert is None) != (client_key is None):
            raise InvalidArgument("client_cert and client_key go together (mTLS)")
        if tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_pem(ca, "ca"),
                private_key=_pem(client_key, "client_key"),
                certificate_chain=_pem(client_cert, "client_cert"),
            )
            if domain:
                options.append(("grpc.ssl_target_name_override", domain))
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            if ca is not None or client_cert is not None:
                raise InvalidArgument(
                    f"a CA or client certificate was given but '{target}' is not https://"
                )
            self._channel = grpc.insecure_channel(address, options=options)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise Unavailable(
                f"cannot connect to {target} within {connect_timeout:g} s "
                "(is hiltd running there, and is the scheme right: http:// or https://?)"
            ) from None
        self._stub = hilt_pb2_grpc.HiltStub(self._channel)
        self._closed = False
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------

    @property
    def stub(self) -> hilt_pb2_grpc.HiltStub:
        """The generated stub, for calls this wrapper does not cover (pass
        ``metadata=client.metadata`` so the token goes along)."""
        return self._stub

    @property
    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        """Metadata sent with every call (the bearer token, if any)."""
        return self._metadata

    def _call(
        self,
        fn: Callable[..., T],
        request: Any,
        *,
        timeout: Optional[float] = None,
        lease: bool = False,
        use_default_timeout: bool = True,
    ) -> T:
        """One unary call with the token, errors mapped."""
        if timeout is None and use_default_timeout:
            timeout = self.timeout
        try:
            return fn(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, lease=lease) from None

    def close(self) -> None:
        """Close the channel (leases still held expire after their TTL)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"hilt.Client({self.target!r})"

    # -- discovery --------------------------------------------------------

    def server_info(self) -> ServerInfo:
        """hiltd's version and what measures behind each device."""
        r = self._call(self._stub.GetServerInfo, hilt_pb2.GetServerInfoRequest())
        return ServerInfo._from_pb(r)

    def devices(self) -> List[DeviceSpec]:
        """Every device the daemon serves, with its spec."""
        r = self._call(self._stub.ListDevices, hilt_pb2.ListDevicesRequest())
        return [DeviceSpec._from_pb(d) for d in r.devices]

    def describe(self, device: str) -> DeviceDescription:
        """One device's spec (ranges, units, encoding, hyperparameters) and
        its status now."""
        r = self._call(
            self._stub.DescribeDevice, hilt_pb2.DescribeDeviceRequest(device_id=device)
        )
        return DeviceDescription(DeviceSpec._from_pb(r.spec), DeviceStatus._from_pb(r.status))

    # -- leases -----------------------------------------------------------

    def lease(self, device: str, ttl: float = 30.0, wait: Optional[float] = None) -> Lease:
        """Wait (FIFO, behind earlier waiters) for ``device`` and hold it.

        The lease is acquired by this call; a background thread keeps it
        alive every third of the granted TTL, and leaving the ``with``
        block (normally or by an exception) releases it. ``wait`` bounds
        the wait in seconds (``None``: until granted); a lease not granted
        in time raises a :class:`hilt.LeaseError` that is also a
        :class:`hilt.DeadlineExceeded`. ``ttl`` is how long the daemon
        keeps the device for this client after its last sign of life (0:
        the daemon's default).
        """
        return Lease._acquire(self, device, ttl, wait)

    # -- watching ---------------------------------------------------------

    def watch(self, device: str) -> "Watch":
        """The device's status now, then every change, as :class:`DeviceEvent`
        values. Iterate over it; ``close()`` (or leaving a ``with`` block)
        ends the watch, which otherwise lasts as long as the daemon."""
        call = self._stub.WatchDevice(
            hilt_pb2.WatchDeviceRequest(device_id=device), metadata=self._metadata
        )
        return Watch(call)


class Watch(Iterator[DeviceEvent]):
    """An open ``WatchDevice`` call: an iterator of :class:`DeviceEvent`."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._done = False
        self._closed_by_us = False

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> DeviceEvent:
        if self._done:
            raise StopIteration
        try:
            m = next(self._call)
        except StopIteration:
            self._done = True
            raise
        except grpc.RpcError as e:
            self._done = True
            if e.code() == grpc.StatusCode.CANCELLED and self._closed_by_us:
                raise StopIteration from None
            raise from_rpc_error(e) from None
        return DeviceEvent._from_pb(m)

    def close(self) -> None:
        """End the watch (iteration then stops)."""
        self._closed_by_us = True
        self._call.cancel()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._call.cancel()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

