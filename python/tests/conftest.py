"""Fixtures: a real ``hiltd`` on an ephemeral loopback port, and the ``hilt``
CLI for the Rust reference.

The binaries come from ``HILTD_BIN`` / ``HILT_BIN`` (``python/run-tests``
sets them), defaulting to the repository's ``target/debug`` build. A missing
binary fails the tests with the path looked at; it never skips them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]


def binary(env: str, name: str) -> Path:
    p = Path(os.environ.get(env) or REPO / "target" / "debug" / name)
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"{name} not found at {p} (set {env}, or build it: cargo build -p ...)", pytrace=False)
    return p


class Daemon:
    """A running hiltd: its address (``host:port``) and its URL."""

    def __init__(self, args: List[str], env: Optional[dict] = None) -> None:
        self.proc = subprocess.Popen(
            [str(binary("HILTD_BIN", "hiltd")), "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # hiltd prints the ready line only once every device is built; its
        # logs go to stderr, drained so a chatty daemon never blocks.
        self.stderr: List[str] = []
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        line = self.proc.stdout.readline()
        if not line.startswith("hiltd listening on "):
            self.stop()
            raise RuntimeError(f"hiltd did not start: {line!r}\n{''.join(self.stderr)}")
        self.addr = line.split()[-1]
        self.url = f"http://{self.addr}"
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def hiltd() -> Iterator[Daemon]:
    """One daemon for the whole session (the embedded default config)."""
    d = Daemon([])
    yield d
    d.stop()


@pytest.fixture
def fresh_hiltd() -> Iterator[Daemon]:
    """A daemon of the test's own (for tests that change its state)."""
    d = Daemon([])
    yield d
    d.stop()


@pytest.fixture
def client(hiltd: Daemon):  # type: ignore[no-untyped-def]
    import hilt

    c = hilt.Client(hiltd.addr)
    yield c
    c.close()


def run_hilt(*args: str) -> str:
    """The hilt CLI (quiet); its stdout, or a failure with its stderr."""
    r = subprocess.run(
        [str(binary("HILT_BIN", "hilt")), "-q", *args], capture_output=True, text=True, timeout=600
    )
    if r.returncode != 0:
        pytest.fail(f"hilt {' '.join(args)} failed ({r.returncode}):\n{r.stderr}", pytrace=False)
    return r.stdout


# Twins for the tests that need them, recorded and fitted once per session
# with the Rust CLI (small, so a debug build fits them in seconds): the SHG
# pair of the vowel network (MLP twins) and a plate and a circuit device
# (waveform twins: RMS and mean bins).
TWIN_PLAN = {
    "shg-hidden": (3000, 30),
    "shg-readout": (3000, 30),
    "plate-hidden": (300, 5),
    "circuit-hidden": (200, 5),
}


@pytest.fixture(scope="session")
def fitted_twins(hiltd: Daemon, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``{device: (recording.npz, twin.safetensors)}``."""
    d = tmp_path_factory.mktemp("twins")
    out = {}
    for dev, (samples, epochs) in TWIN_PLAN.items():
        npz, st = d / f"{dev}.npz", d / f"{dev}.safetensors"
        run_hilt("--server", hiltd.url, "collect", "--device", dev, "--samples", str(samples),
                 "--seed", "1", "--out", str(npz))
        run_hilt("--server", hiltd.url, "twin", "fit", "--data", str(npz), "--out", str(st),
                 "--twin-epochs", str(epochs))
        out[dev] = (npz, st)
    return out
