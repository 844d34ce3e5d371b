"""The client against a real hiltd: discovery, leases, execute, stream,
watch, and every bad input mapped to its exception type."""

from __future__ import annotations

import hashlib
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import pytest

import hilt
from conftest import Daemon, binary

DEV = "shg-readout"


def rand_batch(rng: np.random.Generator, b: int, n_in: int = 12, n_par: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0, 1, (b, n_in)).astype(np.float32), rng.uniform(-1, 1, (1, n_par)).astype(np.float32)


# -- discovery -----------------------------------------------------------


def test_devices_and_describe(client: hilt.Client) -> None:
    ids = {d.id for d in client.devices()}
    assert {"shg-hidden", "shg-readout", "plate-hidden", "loopback0"} <= ids
    d = client.describe(DEV)
    s = d.spec
    assert (s.id, s.kind, s.backend, s.n_in, s.n_par, s.n_out) == (DEV, "shg", "sim", 12, 64, 7)
    assert (s.input_range.min, s.input_range.max) == (0.0, 1.0)
    assert (s.param_range.min, s.param_range.max) == (-1.0, 1.0)
    assert s.input_unit and s.output_unit and s.limit_policy == "reject"
    assert s.max_batch == 4096 and s.max_repeats == 64
    assert s.encoding is not None and s.encoding.n_controls == 64
    assert d.status.device_id == DEV and d.status.state in ("ready", "busy")
    plate = client.describe("plate-hidden").spec
    assert "response_memory_samples" in plate.hyperparameters
    info = client.server_info()
    assert info.version and DEV in info.firmware


def test_unknown_device_is_not_found(client: hilt.Client) -> None:
    with pytest.raises(hilt.NotFound) as e:
        client.describe("no-such-rig")
    assert "no-such-rig" in e.value.message and "shg-readout" in e.value.message
    with pytest.raises(hilt.NotFound) as e2:
        client.lease("no-such-rig", wait=1)
    assert isinstance(e2.value, hilt.LeaseError)


def test_unreachable_daemon_is_unavailable() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(hilt.Unavailable):
        hilt.Client(f"127.0.0.1:{port}", connect_timeout=1.0)


# -- execute ---------------------------------------------------------------


def test_execute_returns_everything(client: hilt.Client) -> None:
    rng = np.random.default_rng(1)
    x, th = rand_batch(rng, 5)
    with client.lease(DEV, ttl=30) as dev:
        m = dev.execute(x, th[0], repeats=3, return_repeats=True)
    assert m.y.shape == (5, 7) and m.y.dtype == np.float32
    assert m.repeats is not None and m.repeats.shape == (3, 5, 7)
    assert m.std is not None and m.std.shape == (5, 7)
    np.testing.assert_allclose(m.repeats.mean(axis=0), m.y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.repeats.std(axis=0), m.std, rtol=1e-3, atol=1e-6)
    # Applied values: on the grid and in range, so close to what was sent.
    assert m.applied_x.shape == (5, 12) and m.applied_theta.shape == (1, 64)
    np.testing.assert_allclose(m.applied_x, x, atol=1e-3)
    np.testing.assert_allclose(m.applied_theta, th, atol=1e-3)
    assert len(m.flags) == 5 and m.saturated.shape == (5,) and m.clamped.dtype == bool
    assert m.t_start.shape == (5,) and np.all(m.t_end >= m.t_start)
    assert m.wall_start is not None and m.wall_end is not None and m.wall_end >= m.wall_start
    assert m.calibration_id and m.device_id == DEV
    # One row per theta row works too, and repeats=1 carries no std.
    m1 = client_execute_per_row(client, x, np.repeat(th, 5, axis=0))
    assert m1.applied_theta.shape == (5, 64) and m1.std is None and m1.repeats is None


def client_execute_per_row(client: hilt.Client, x: np.ndarray, th: np.ndarray) -> hilt.Measurement:
    with client.lease(DEV) as dev:
        return dev.execute(x, th)


def test_loopback_applies_what_was_sent(client: hilt.Client) -> None:
    spec = client.describe("loopback0").spec
    rng = np.random.default_rng(2)
    x = rng.uniform(spec.input_range.min, spec.input_range.max, (3, spec.n_in)).astype(np.float32)
    th = rng.uniform(spec.param_range.min, spec.param_range.max, (1, spec.n_par)).astype(np.float32)
    with client.lease("loopback0") as dev:
        m = dev.execute(x, th)
    assert m.y.shape == (3, spec.n_out)
    np.testing.assert_array_equal(m.applied_x, x)


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "case, exc, needle",
    [
        ("x_wide", hilt.InvalidArgument, "x"),
        ("theta_short", hilt.InvalidArgument, "theta"),
        ("x_nan", hilt.InvalidArgument, "x"),
        ("x_out_of_range", hilt.OutOfRange, "x[1, 3]"),
        ("theta_out_of_range", hilt.OutOfRange, "theta[0, 5]"),
        ("repeats_zero", hilt.InvalidArgument, "repeats"),
        ("repeats_too_many", hilt.ResourceExhausted, "repeats"),
        ("batch_too_large", hilt.ResourceExhausted, "4096"),
    ],
)
def test_bad_input_maps_to_its_exception(client: hilt.Client, case: str, exc: type, needle: str) -> None:
    rng = np.random.default_rng(3)
    x, th = rand_batch(rng, 4)
    repeats = 1
    if case == "x_wide":
        x = np.zeros((4, 13), np.float32)
    elif case == "theta_short":
        th = np.zeros((1, 63), np.float32)
    elif case == "x_nan":
        x[2, 1] = np.nan
    elif case == "x_out_of_range":
        x[1, 3] = 1.5
    elif case == "theta_out_of_range":
        th[0, 5] = -2.0
    elif case == "repeats_zero":
        repeats = 0
    elif case == "repeats_too_many":
        repeats = 65
    elif case == "batch_too_large":
        x, _ = rand_batch(rng, 4097)
    with client.lease(DEV) as dev:
        with pytest.raises(exc) as e:
            dev.execute(x, th, repeats=repeats)
        # The lease is still good after a refused batch.
        assert dev.execute(*rand_batch(rng, 1)).y.shape == (1, 7)
    err = e.value
    assert type(err) is exc, f"{type(err)} for {case}"
    assert isinstance(err, hilt.HiltError) and err.code == exc.default_code
    assert needle in err.message, err.message


def test_lease_errors(client: hilt.Client) -> None:
    rng = np.random.default_rng(4)
    dev = client.lease(DEV, ttl=30)
    dev.release()
    with pytest.raises(hilt.LeaseError) as e:
        dev.execute(*rand_batch(rng, 1))
    assert isinstance(e.value, hilt.FailedPrecondition) and "lease_id" in e.value.message
    with pytest.raises(hilt.InvalidArgument):
        client.lease(DEV, ttl=-1)
    # A lease held elsewhere: a bounded wait ends DEADLINE_EXCEEDED.
    with client.lease(DEV) as held:
        t0 = time.monotonic()
        with pytest.raises(hilt.LeaseError) as w:
            client.lease(DEV, wait=0.5)
        assert isinstance(w.value, hilt.DeadlineExceeded)
        assert time.monotonic() - t0 < 5
        assert held.execute(*rand_batch(rng, 1)).y.shape == (1, 7)


def test_lease_released_when_the_block_raises(client: hilt.Client) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with client.lease(DEV, ttl=600) as dev:
            assert client.describe(DEV).status.leased
            raise RuntimeError("boom")
    assert dev.released
    assert not client.describe(DEV).status.leased
    # Free at once, not after the 600 s TTL.
    with client.lease(DEV, wait=2) as again:
        assert again.execute(np.full((1, 12), 0.5, np.float32), np.zeros(64, np.float32)).y.shape == (1, 7)


def test_keepalive_holds_the_lease_past_its_ttl(client: hilt.Client) -> None:
    with client.lease(DEV, ttl=1.0) as dev:
        assert dev.ttl == pytest.approx(1.0)
        time.sleep(2.5)
        assert dev.keepalives >= 4 and dev.lost is None
        assert dev.execute(np.full((1, 12), 0.5, np.float32), np.zeros(64, np.float32)).y.shape == (1, 7)


# -- stream ------------------------------------------------------------------


def test_stream_in_order_with_a_bounded_window(client: hilt.Client) -> None:
    rng = np.random.default_rng(5)
    batches = [rand_batch(rng, int(rng.integers(1, 40))) for _ in range(60)]
    pulled: List[int] = []

    def feed() -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for i, b in enumerate(batches):
            pulled.append(i)
            yield b

    window = 4
    got = []
    with client.lease(DEV) as dev:
        for k, m in enumerate(dev.stream(feed(), window=window, repeats=2)):
            # Never more than `window` batches taken beyond the k + 1
            # answered (this one's credit is back before it is yielded).
            assert len(pulled) <= k + 1 + window
            got.append(m)
    assert len(got) == len(batches)
    for (x, th), m in zip(batches, got):
        assert m.y.shape == (x.shape[0], 7) and m.std is not None
        np.testing.assert_allclose(m.applied_x, x, atol=1e-3)


def test_stream_error_surfaces_in_place(client: hilt.Client) -> None:
    rng = np.random.default_rng(6)
    batches = [rand_batch(rng, 3) for _ in range(6)]
    batches[3][0][0, 0] = 7.0  # out of range
    got = []
    with client.lease(DEV) as dev:
        with pytest.raises(hilt.OutOfRange) as e:
            for m in dev.stream(batches, window=2):
                got.append(m)
        assert len(got) == 3
        assert "x[0, 0]" in e.value.message
        # The lease survives; a new stream works.
        assert len(list(dev.stream(batches[:2], window=8))) == 2
        with pytest.raises(hilt.InvalidArgument):
            dev.stream(batches, window=0)


def test_stream_feed_error_is_raised_after_earlier_answers(client: hilt.Client) -> None:
    rng = np.random.default_rng(7)

    def feed() -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        yield rand_batch(rng, 2)
        yield rand_batch(rng, 2)
        raise KeyError("feeder broke")

    with client.lease(DEV) as dev:
        got = []
        with pytest.raises(KeyError, match="feeder broke"):
            for m in dev.stream(feed(), window=8):
                got.append(m)
        assert len(got) == 2


# -- watch -------------------------------------------------------------------


def test_watch_sees_snapshot_and_lease_changes(client: hilt.Client) -> None:
    events: "queue.Queue[hilt.DeviceEvent]" = queue.Queue()
    w = client.watch(DEV)

    def pump() -> None:
        try:
            for ev in w:
                events.put(ev)
        except hilt.HiltError:
            pass

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    first = events.get(timeout=10)
    assert first.kind == "snapshot" and first.status.device_id == DEV and not first.status.leased
    with client.lease(DEV) as dev:
        dev.execute(np.full((2, 12), 0.5, np.float32), np.zeros(64, np.float32))
        seen = []
        while not any(e.kind == "lease_changed" and e.status.leased for e in seen):
            seen.append(events.get(timeout=10))
    while not any(e.kind == "lease_changed" and not e.status.leased for e in seen):
        seen.append(events.get(timeout=10))
    assert all(e.time is not None for e in seen)
    w.close()
    t.join(timeout=5)
    assert not t.is_alive()
    with pytest.raises(hilt.NotFound):
        next(iter(client.watch("no-such-rig")))


# -- tokens and TLS ----------------------------------------------------------


def _config_with(server_tables: str, tmp: Path) -> Path:
    """The embedded default config with ``server_tables`` (``[server.tls]``,
    ``[[server.token]]``) after its ``[server]`` keys, before the devices."""
    base = subprocess.run(
        [str(binary("HILTD_BIN", "hiltd")), "--print-default-config"], capture_output=True, text=True, check=True
    ).stdout
    head, sep, rest = base.partition("\n[[device]]")
    assert sep, "the default config has no [[device]]"
    p = tmp / "hiltd.toml"
    p.write_text(head + "\n" + server_tables + sep + rest)
    return p


def test_tls_and_tokens(tmp_path: Path) -> None:
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=labpc",
         "-keyout", "server.key", "-out", "server.csr")
    (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:labpc.test,IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-out", "server.pem", "-extfile", "ext.cnf")
    op, obs = "hilt_operator_token_for_tests", "hilt_observer_token_for_tests"
    sha = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
    cfg = _config_with(
        "[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n"
        f"[[server.token]]\nname = \"alice\"\nrole = \"operator\"\nsha256 = \"{sha(op)}\"\ndevices = [\"loopback0\"]\n"
        f"[[server.token]]\nname = \"bob\"\nrole = \"observer\"\nsha256 = \"{sha(obs)}\"\n",
        tmp_path,
    )
    d = Daemon(["--config", str(cfg)])
    try:
        url = f"https://{d.addr}"
        ca = tmp_path / "ca.pem"
        with pytest.raises(hilt.Unauthenticated):
            hilt.Client(url, ca=ca).devices()
        with pytest.raises(hilt.Unauthenticated):
            hilt.Client(url, ca=ca, token="not-a-known-token").devices()
        c = hilt.Client(url, ca=ca, token=op)
        assert "loopback0" in {s.id for s in c.devices()}
        with c.lease("loopback0") as dev:
            spec = dev.spec
            assert dev.execute(np.zeros((2, spec.n_in), np.float32), np.zeros(spec.n_par, np.float32)).y.shape == (2, spec.n_out)
        with pytest.raises(hilt.PermissionDenied) as e:
            c.lease(DEV, wait=1)
        assert isinstance(e.value, hilt.LeaseError)
        viewer = hilt.Client(url, ca=ca.read_bytes(), token=obs, domain="labpc.test")
        assert viewer.describe(DEV).spec.id == DEV
        with pytest.raises(hilt.PermissionDenied):
            viewer.lease("loopback0", wait=1)
        # Plaintext to a TLS daemon, or a CA with http://, is refused clearly.
        with pytest.raises(hilt.InvalidArgument):
            hilt.Client(d.url, ca=ca)
        for cl in (c, viewer):
            cl.close()
    finally:
        d.stop()
