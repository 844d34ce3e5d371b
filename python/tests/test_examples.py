"""The examples run: PAT from Python beats training on the twins alone, the
plot is written, the benchmark reports its quantiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import Daemon

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# The reduced run: 100 epochs (of hilt's 300) on twins of 3000 probes fitted
# for 30 epochs (conftest.TWIN_PLAN). Measured over seeds 0-2 (rig test
# accuracy, PAT / in silico): see python/README.md. PAT must beat the twin-only
# network by MARGIN and reach FLOOR on its own.
EPOCHS = 100
SEED = 0
MARGIN = 0.25
FLOOR = 0.6


def run(args: list, timeout: float = 600) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{args[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_pat_vowels_beats_in_silico(hiltd: Daemon, fitted_twins: dict) -> None:
    out = run([
        str(EXAMPLES / "pat_vowels.py"), "--server", hiltd.addr, "--method", "pat,insilico",
        "--epochs", str(EPOCHS), "--seed", str(SEED), "--eval-every", "0", "--quiet", "--json",
        "--twin", f"shg-hidden={fitted_twins['shg-hidden'][1]}",
        "--twin", f"shg-readout={fitted_twins['shg-readout'][1]}",
    ])
    res = json.loads(out.strip().splitlines()[-1])["results"]
    pat, ins = res["pat"]["test_accuracy"], res["insilico"]["test_accuracy"]
    print(f"PAT {100 * pat:.1f} %, in silico {100 * ins:.1f} % (twins predicted {100 * res['insilico']['twin_test_accuracy']:.1f} %)")
    assert pat >= FLOOR, out
    assert pat - ins >= MARGIN, out


def test_plot_measurement_writes_a_png(hiltd: Daemon, tmp_path: Path) -> None:
    png = tmp_path / "m.png"
    out = run([str(EXAMPLES / "plot_measurement.py"), "--server", hiltd.addr, "--out", str(png), "--points", "21"])
    assert "wrote" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_bench_execute_reports_quantiles(hiltd: Daemon) -> None:
    out = run([str(EXAMPLES / "bench_execute.py"), "--server", hiltd.addr, "--batch", "1", "64",
               "--calls", "30", "--warmup", "5"])
    lines = [l for l in out.splitlines() if "p50" in l]
    assert len(lines) == 2 and "batch 64" in lines[1], out
