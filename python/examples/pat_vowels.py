#!/usr/bin/env python3
"""The paper's vowel network, trained with Physics-Aware Training from Python.

Wright et al., Nature 601, 549 (2022): an all-physical network of SHG
passes (``shg-hidden`` ×3, then ``shg-readout`` with 7 bins), an
element-wise rescale before each pass and a rescaled readout; the class is
the brightest of the 7 bins. It is the network ``hilt demo`` trains
(``crates/hilt-train/src/presets.rs``: 4 layers, 300 epochs, batch 32, 2
repeats, Adam 0.02 on θ and on the rescales, cosine to 5 %, clip 1, range
penalty 5) with the same initialisation (``train/init.rs``) and the same
step (``method/pat.rs``, ``net/norm.rs``), written in PyTorch:

* ``--method pat``: forward on the rig through :class:`hilt.torch.PhysicalLayer`
  (measured values, the twin's vector-Jacobian product at the applied x and
  θ backward);
* ``--method insilico``: the same network trained on the twins alone, then
  measured on the rig: what PAT is compared with.

Both start from the same seeded network and twins. Twins come from
``--twin DEV=FILE`` (``hilt twin fit`` output) or, when missing, are recorded
and fitted with the ``hilt`` CLI (``--hilt-bin``, ``HILT_BIN``, or ``hilt``
on PATH). The data is the 258-row female Hillenbrand set shipped in
``crates/hilt-train/data``, split 80/20 stratified with a fixed seed (the
same sizes as hilt's 209/49 split; the rows differ, the Rust split uses its
own generator).

    python examples/pat_vowels.py --server 127.0.0.1:50051 --epochs 300 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

import hilt
from hilt.torch import PhysicalLayer, Twin, load_twin

CLASSES = ["ae", "ah", "aw", "uw", "er", "iy", "ih"]
FEATURES = [
    "F1_ss", "F2_ss", "F3_ss", "F1_20", "F2_20", "F3_20",
    "F1_50", "F2_50", "F3_50", "F1_80", "F2_80", "F3_80",
]
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "crates" / "hilt-train" / "data" / "hillenbrand_vowels_female.csv"
SPLIT_SEED = 20220126
# hilt-train's constants (net/norm.rs, train/init.rs, method/gradient.rs).
SPREAD_FLOOR = 0.3
READOUT_GAIN = 3.0
FOLLOW_MOMENTUM = 0.1
LR_FLOOR = 0.05


# -- data -------------------------------------------------------------------


def load_vowels(path: Path) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """Train and test splits (x z-scored on the training rows, labels)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[c]) for c in FEATURES] for r in rows], dtype=np.float32)
    y = np.array([CLASSES.index(r["vowel"]) for r in rows], dtype=np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * 0.2))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    train, test = np.sort(train), np.sort(test)
    mean = x[train].mean(axis=0)
    std = np.maximum(x[train].std(axis=0), 1e-6)
    z = ((x - mean) / std).astype(np.float32)
    return (z[train], y[train]), (z[test], y[test])


# -- the network ----------------------------------------------------------


def batch_stats(h: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-value mean and spread, floored at 0.3 of the layer's RMS spread."""
    mean = h.mean(dim=0, keepdim=True)
    var_f = ((h - mean) ** 2).mean(dim=0, keepdim=True)
    std = torch.sqrt(var_f + var_f.mean() * SPREAD_FLOOR**2 + 1e-12)
    return mean, std


class Rescale(nn.Module):
    """``a ⊙ (x − mean) ⊙ inv_std + b`` (the paper's "manifold"); mean and
    spread are statistics, not trained."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(1, dim))
        self.b = nn.Parameter(torch.zeros(1, dim))
        self.register_buffer("mean", torch.zeros(1, dim))
        self.register_buffer("inv_std", torch.ones(1, dim))

    def forward(self, h: Tensor) -> Tensor:
        return (h - self.mean) * self.inv_std * self.a + self.b


class VowelNet(nn.Module):
    """rescale → SHG → rescale → … → SHG (7 bins) → rescale; class = argmax.

    (hilt-train puts a ``tile`` before each rescale; every device here
    takes exactly what the layer before gives, so each tile is one copy.)
    """

    def __init__(self, physical: Sequence[PhysicalLayer], n_in: int, n_classes: int) -> None:
        super().__init__()
        self.physical = nn.ModuleList(physical)
        widths = [n_in] + [p.spec.n_out for p in physical[:-1]]
        self.rescales = nn.ModuleList(Rescale(w) for w in widths)
        self.readout = Rescale(n_classes)

    def set_mode(self, mode: str) -> None:
        for p in self.physical:
            p.mode = mode

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """Logits, the range penalty and each physical layer's output."""
        h = x
        penalty = torch.zeros(())
        outs = []
        for r, p in zip(self.rescales, self.physical):
            h = r(h)
            penalty = penalty + p.penalty(h)
            h = p(h)
            outs.append(h.detach())
        return self.readout(h), penalty, outs

    def follow_statistics(self, x: Tensor, outs: List[Tensor]) -> None:
        """Move every rescale that feeds a device a tenth of the way to this
        batch's statistics of what reaches it (``net/norm.rs``)."""
        if x.shape[0] < 2:
            return
        with torch.no_grad():
            ins = [x] + outs[:-1]
            for r, h in zip(self.rescales, ins):
                bm, bs = batch_stats(h)
                old_std = 1.0 / r.inv_std
                r.mean.copy_(r.mean * (1 - FOLLOW_MOMENTUM) + bm * FOLLOW_MOMENTUM)
                r.inv_std.copy_(1.0 / (old_std * (1 - FOLLOW_MOMENTUM) + bs * FOLLOW_MOMENTUM))


def spread_score(h: Tensor) -> float:
    sd = ((h - h.mean(0, keepdim=True)) ** 2).mean(0).sqrt().mean()
    return float(sd / (h.abs().mean() + 1e-12))


def place_rescale(r: Rescale, h: Tensor, next_range: Optional[hilt.Range]) -> None:
    """Standardise what reaches ``r`` and map ±2σ onto the next device's
    input range (unit scores when no device follows)."""
    mean, std = batch_stats(h)
    scale, centre = (1.0, 0.0) if next_range is None else (
        next_range.width / 4.0, next_range.min + next_range.width / 2.0)
    with torch.no_grad():
        r.mean.copy_(mean)
        r.inv_std.copy_(1.0 / std)
        r.a.fill_(scale)
        r.b.fill_(centre)


def fit_readout(r: Rescale, h: Tensor, y: np.ndarray) -> None:
    """Each class's gain: 3 × the correlation of its standardised bin with
    the class indicator (so the logits do not all start equal)."""
    z = ((h - r.mean) * r.inv_std).double().numpy()
    gains = []
    for c in range(z.shape[1]):
        t = (y == c).astype(np.float64)
        dz, dt = z[:, c] - z[:, c].mean(), t - t.mean()
        corr = (dz * dt).sum() / max(math.sqrt((dz * dz).sum() * (dt * dt).sum()), 1e-12)
        gains.append(READOUT_GAIN * corr)
    with torch.no_grad():
        r.a.copy_(torch.tensor(gains, dtype=torch.float32).reshape(1, -1))


def initialise(net: VowelNet, x: np.ndarray, y: np.ndarray, seed: int, rows: int = 512, draws: int = 16) -> None:
    """hilt-train's initialisation through the twins (``train/init.rs``):
    each physical layer keeps, of 16 θ draws, the one whose output varies
    most; each rescale maps ±2σ of what reaches it onto the next device's
    range; the readout starts as a correlation readout."""
    rng = np.random.default_rng(seed ^ 0x1417)
    n = x.shape[0]
    k = min(n, rows)
    picked = [i * n // k for i in range(k)]
    h = torch.from_numpy(x[picked])
    yy = y[picked]
    with torch.no_grad():
        for r, p in zip(net.rescales, net.physical):
            place_rescale(r, h, p.spec.input_range)
            h = r(h)
            pr = p.spec.param_range
            best = (-math.inf, p.theta.detach().clone())
            for d in range(draws):
                cand = best[1] if d == 0 else torch.from_numpy(
                    rng.uniform(pr.min, pr.max, size=(1, p.spec.n_par)).astype(np.float32))
                out = p.twin(hilt.torch.clamp_to(h, p.spec.input_range), hilt.torch.clamp_to(cand, pr))
                s = spread_score(out)
                if s > best[0]:
                    best = (s, cand)
            p.theta.copy_(best[1])
            h = p.twin(hilt.torch.clamp_to(h, p.spec.input_range), hilt.torch.clamp_to(p.theta, pr))
        place_rescale(net.readout, h, None)
        fit_readout(net.readout, h, yy)


# -- training ---------------------------------------------------------------


def accuracy(net: VowelNet, x: np.ndarray, y: np.ndarray, mode: str) -> float:
    """Accuracy with every physical layer measured on the rig (``pat``) or
    predicted by its twin (``twin``)."""
    net.set_mode(mode)
    with torch.no_grad():
        logits, _, _ = net(torch.from_numpy(x))
    return float((logits.argmax(1).numpy() == y).mean())


def train(
    net: VowelNet,
    data: Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]],
    method: str,
    epochs: int,
    seed: int,
    batch: int = 32,
    lr_physical: float = 0.02,
    lr_digital: float = 0.02,
    clip: float = 1.0,
    lag_amp: float = 5.0,
    eval_every: int = 0,
    quiet: bool = False,
) -> Dict[str, float]:
    """Train ``net`` with PAT (``pat``) or on the twins alone
    (``insilico``); returns the test accuracy measured on the rig and the
    twins' prediction of it."""
    (xtr, ytr), (xte, yte) = data
    phys = [p.theta for p in net.physical]
    digi = [q for r in list(net.rescales) + [net.readout] for q in (r.a, r.b)]
    opt = torch.optim.Adam([
        {"params": phys, "lr": lr_physical},
        {"params": digi, "lr": lr_digital},
    ], betas=(0.9, 0.999), eps=1e-8)
    base = [lr_physical, lr_digital]
    rng = np.random.default_rng(seed)
    n = xtr.shape[0]
    steps = epochs * math.ceil(n / batch)
    step = 0
    mode = "pat" if method == "pat" else "twin"
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        loss_sum, hits = 0.0, 0
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            factor = LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * step / steps))
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * factor
            xb = torch.from_numpy(xtr[idx])
            yb = torch.from_numpy(ytr[idx])
            net.set_mode(mode)
            logits, penalty, outs = net(xb)
            ce = nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            (ce + lag_amp * penalty).backward()
            norm = torch.nn.utils.clip_grad_norm_(phys + digi, clip)
            if not torch.isfinite(norm):
                raise RuntimeError("gradient is not finite; lower the learning rates")
            opt.step()
            if method == "insilico":
                # The standardisation follows the twins, after the step.
                with torch.no_grad():
                    _, _, outs = net(xb)
            net.follow_statistics(xb, outs)
            loss_sum += float(ce) * len(idx)
            hits += int((logits.argmax(1) == yb).sum())
            step += 1
        if not quiet and (eval_every and epoch % eval_every == 0 or epoch == epochs):
            test = accuracy(net, xte, yte, "pat")
            print(
                f"{method} epoch {epoch:4d}: loss {loss_sum / n:.3f} train {100 * hits / n:.1f} % "
                f"test (rig) {100 * test:.1f} %  [{time.time() - t0:.1f} s]",
                flush=True,
            )
    return {
        "test_accuracy": accuracy(net, xte, yte, "pat"),
        "twin_test_accuracy": accuracy(net, xte, yte, "twin"),
        "train_accuracy": accuracy(net, xtr, ytr, "pat"),
        "wall_seconds": time.time() - t0,
    }


# -- twins ------------------------------------------------------------------


def hilt_bin(arg: Optional[str]) -> str:
    b = arg or os.environ.get("HILT_BIN") or shutil.which("hilt")
    if not b:
        raise SystemExit("no twin given and no `hilt` CLI to fit one: pass --twin DEV=FILE or --hilt-bin")
    return b


def fit_twin(hilt_cli: str, server: str, device: str, out_dir: Path, samples: int, epochs: int, seed: int) -> Path:
    """Record ``samples`` random probes of ``device`` and fit its twin with
    the hilt CLI (the twin file format PAT's Rust side uses)."""
    url = server if "://" in server else f"http://{server}"
    npz = out_dir / f"{device}.npz"
    st = out_dir / f"{device}.safetensors"
    subprocess.run([hilt_cli, "-q", "--server", url, "collect", "--device", device,
                    "--samples", str(samples), "--seed", str(seed), "--out", str(npz)], check=True)
    subprocess.run([hilt_cli, "-q", "--server", url, "twin", "fit", "--data", str(npz),
                    "--twin-epochs", str(epochs), "--out", str(st)], check=True)
    return st


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default=os.environ.get("HILT_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--method", default="pat", help="pat, insilico, or both: pat,insilico")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hidden-device", default="shg-hidden")
    ap.add_argument("--device", default="shg-readout")
    ap.add_argument("--twin", action="append", default=[], metavar="DEV=FILE")
    ap.add_argument("--twins-dir", type=Path, help="where missing twins are recorded and fitted")
    ap.add_argument("--twin-samples", type=int, default=10000)
    ap.add_argument("--twin-epochs", type=int, default=120)
    ap.add_argument("--hilt-bin")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--eval-every", type=int, default=25, help="measure test accuracy every N epochs (0: at the end)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON line last")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    methods = [m.strip() for m in a.method.split(",") if m.strip()]
    for m in methods:
        if m not in ("pat", "insilico"):
            ap.error(f"unknown method {m!r}")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    data = load_vowels(a.data)
    client = hilt.Client(a.server)
    devices = sorted({a.hidden_device, a.device})
    twin_files: Dict[str, Path] = {}
    for t in a.twin:
        dev, _, f = t.partition("=")
        twin_files[dev] = Path(f)
    missing = [d for d in devices if d not in twin_files]
    tmp = None
    if missing:
        out_dir = a.twins_dir or Path(tmp := tempfile.mkdtemp(prefix="pat-vowels-twins-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        cli = hilt_bin(a.hilt_bin)
        for d in missing:
            if not a.quiet:
                print(f"recording and fitting the twin of {d} ({a.twin_samples} probes, {a.twin_epochs} epochs)", flush=True)
            twin_files[d] = fit_twin(cli, a.server, d, out_dir, a.twin_samples, a.twin_epochs, a.seed)
    twins: Dict[str, Twin] = {d: load_twin(twin_files[d]) for d in devices}

    results: Dict[str, Dict[str, float]] = {}
    leases = {d: client.lease(d, ttl=30) for d in devices}
    try:
        for method in methods:
            gen = torch.Generator().manual_seed(a.seed)
            layers = [
                PhysicalLayer(leases[d], twins[d], repeats=a.repeats, generator=gen)
                for d in [a.hidden_device] * (a.layers - 1) + [a.device]
            ]
            net = VowelNet(layers, data[0][0].shape[1], len(CLASSES))
            initialise(net, *data[0], seed=a.seed)
            r = train(net, data, method, a.epochs, a.seed, eval_every=a.eval_every, quiet=a.quiet)
            results[method] = r
            print(
                f"{method}: test accuracy {100 * r['test_accuracy']:.1f} % on the rig "
                f"(twins predict {100 * r['twin_test_accuracy']:.1f} %), train {100 * r['train_accuracy']:.1f} %, "
                f"{a.epochs} epochs, seed {a.seed}, {r['wall_seconds']:.1f} s",
                flush=True,
            )
    finally:
        for lease in leases.values():
            lease.release()
        client.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps({"seed": a.seed, "epochs": a.epochs, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
