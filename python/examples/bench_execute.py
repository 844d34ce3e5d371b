#!/usr/bin/env python3
"""Execute round trip from Python: p50/p90 over N calls.

Each call is one ``Execute`` of a ``batch × n_in`` batch (inputs and θ drawn
once, inside the device's ranges), timed from the call to the decoded
numpy answer, after a warm-up. Compare with the Rust client on the same
batch.

    python examples/bench_execute.py --server 127.0.0.1:50051 --device shg-readout --batch 1 256 --calls 1000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import hilt


def quantile(v: "list[float]", q: float) -> float:
    return float(np.quantile(np.asarray(v), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default=os.environ.get("HILT_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--device", default="shg-readout")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    client = hilt.Client(a.server)
    spec = client.describe(a.device).spec
    rng = np.random.default_rng(0)
    with client.lease(a.device, ttl=30) as dev:
        for b in a.batch:
            x = rng.uniform(spec.input_range.min, spec.input_range.max, (b, spec.n_in)).astype(np.float32)
            th = rng.uniform(spec.param_range.min, spec.param_range.max, (1, spec.n_par)).astype(np.float32)
            for _ in range(a.warmup):
                dev.execute(x, th, repeats=a.repeats)
            times = []
            for _ in range(a.calls):
                t0 = time.perf_counter()
                dev.execute(x, th, repeats=a.repeats)
                times.append(time.perf_counter() - t0)
            print(
                f"{a.device} batch {b} x {spec.n_in} (repeats {a.repeats}), {a.calls} calls: "
                f"p50 {1e6 * quantile(times, 0.5):.0f} us, p90 {1e6 * quantile(times, 0.9):.0f} us",
                flush=True,
            )
    client.close()


if __name__ == "__main__":
    main()
