#!/usr/bin/env python3
"""The SHG rig's forward model in numpy, beside the Rust bench `shg.rs`.

Why this exists: the simulator must never be the slow part of a run, and
"fast" only means something against what a physicist would otherwise write.
This file is that baseline: the same equations as
`crates/hilt-physics/src/shg/` (config.rs, layout.rs, optics.rs, model.rs),
vectorised over the batch the way a careful numpy user would (no Python loop
over samples; short loops over kernel taps for the blurs; FFT for the χ(2)
autoconvolution), timed at the bench's size (N = 64 channels, batch 256,
`ShgConfig::default()`), and put next to the Rust throughput measured in the
same invocation, so machine load affects both alike.

Usage (from the repository root):

    python3 crates/hilt-physics/benches/shg_numpy.py --bench
    python3 crates/hilt-physics/benches/shg_numpy.py --bench \
        --rust-bench target/release/deps/shg-<hash>
    python3 crates/hilt-physics/benches/shg_numpy.py --check ref.npz

`--check` takes a `hilt collect` recording (x, theta, y, spec_json), rebuilds
the rig from the hyperparameters the device published and compares outputs:
exact to float tolerance for a `nominal` device (noise-free), statistics only
for a `true` one (see `check`).

What cannot be reproduced: the true rig's component mismatch and shot noise
come from Rust's ChaCha8 streams (rand_distr's ziggurat normals). Here the
same draws — same number, kind and arithmetic per rig and per shot — come
from numpy's PCG64, so a `true` rig here is another seed of the same
hardware, not the same rig.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

# Speed of light, nm/fs (optics.rs C_NM_PER_FS).
C_NM_PER_FS = 299.792458
# Registration moves smaller than this (channels) are not re-applied
# (optics.rs REGISTRATION_STEP).
REGISTRATION_STEP = 1e-3
# Seed streams of model.rs: component draws and shot noise never share numbers.
STREAM_MISMATCH = 1
STREAM_NOISE = 2

LAYOUTS = ("blocked", "interleaved", "additive")


@dataclass(frozen=True)
class ShgConfig:
    """`ShgConfig::default()` of config.rs, field for field (same names, so
    a device's published hyperparameters map straight onto it)."""

    n_channels: int = 64
    layout: str = "interleaved"
    n_in: int = 12
    replicate: int = 2
    input_scale: float = 1.0
    n_bins: int = 7
    bin_window: tuple[float, float] = (0.25, 0.75)
    center_nm: float = 800.0
    span_nm: float = 20.0
    source_fwhm: float = 0.5
    beta2_fs2: float = 300.0
    beta3_fs3: float = 5000.0
    ripple_rad: float = 0.05
    crosstalk_channels: float = 0.7
    mask_bits: int = 6
    channel_gain_error: float = 0.03
    mismatch: float = 0.2
    crystal_mm: float = 0.3
    gvm_fs_per_mm: float = 190.0
    resolution_px: float = 1.0
    full_well: float = 65535.0
    reference_fill: float = 0.6
    dark_counts: float = 500.0
    read_noise: float = 65.0
    power_noise: float = 0.01
    spectral_noise: float = 0.02
    drift_sigma: float = 0.02
    drift_tau_s: float = 600.0
    registration_drift_ch_per_h: float = 0.1
    laser_power: float = 1.0
    exposure_s: float = 0.005

    @classmethod
    def from_hyperparameters(cls, h: dict[str, str]) -> "ShgConfig":
        """The config a device published (`hilt describe`, a recording's
        spec_json): values are text, as `ShgModel::hyperparameters` writes
        them (Rust's shortest round-trip float formatting, so exact)."""
        kw: dict[str, object] = {}
        for f in fields(cls):
            if f.name not in h:
                continue
            v = h[f.name]
            if f.name == "layout":
                kw[f.name] = v
            elif f.name == "bin_window":
                a, b = v.split(",")
                kw[f.name] = (float(a), float(b))
            elif f.type in ("int", int):
                kw[f.name] = int(v)
            else:
                kw[f.name] = float(v)
        return cls(**kw)  # type: ignore[arg-type]


# --- layout.rs --------------------------------------------------------------


def channel_map(cfg: ShgConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Per channel: which input and which parameter it carries (-1 = none),
    and the number of parameters; the Bresenham spread of layout.rs."""
    n, r = cfg.n_channels, cfg.replicate
    n_x = cfg.n_in * r
    inp = np.full(n, -1, dtype=np.int64)
    par = np.full(n, -1, dtype=np.int64)
    if cfg.layout == "blocked":
        k = np.arange(n)
        inp[:n_x] = k[:n_x] // r
        par[n_x:] = k[n_x:] - n_x
    elif cfg.layout == "interleaved":
        xi = pi = 0
        for k in range(n):  # setup only, once per rig
            if (k + 1) * n_x // n > k * n_x // n:
                inp[k] = xi // r
                xi += 1
            else:
                par[k] = pi
                pi += 1
    elif cfg.layout == "additive":
        k = np.arange(n)
        inp[:] = k * cfg.n_in // n
        par[:] = k
    else:
        raise ValueError(f"layout {cfg.layout!r} is not one of {LAYOUTS}")
    n_par = n if cfg.layout == "additive" else n - n_x
    return inp, par, n_par


# --- optics.rs ---------------------------------------------------------------


def channel_step(center_nm: float, span_nm: float, n: int) -> float:
    """Angular frequency step between shaper channels, rad/fs."""
    return 2.0 * math.pi * C_NM_PER_FS * span_nm / (center_nm * center_nm) / n


def offset(n: int) -> np.ndarray:
    """Offset of each channel from the band centre, in channel units."""
    return np.arange(n, dtype=np.float64) - (n - 1.0) / 2.0


def source_field(n: int, fwhm_fraction: float, shift: float) -> np.ndarray:
    """Gaussian source field exp(−Ω²/4σ²), centre shifted by `shift` channels."""
    sigma = fwhm_fraction * n / math.sqrt(8.0 * math.log(2.0))
    return np.exp(-((offset(n) - shift) ** 2) / (4.0 * sigma * sigma))


def spectral_phase(dw: float, beta2: float, beta3: float, ripple: np.ndarray) -> np.ndarray:
    """exp(i·(β2Ω²/2 + β3Ω³/6 + ripple_k))."""
    w = offset(len(ripple)) * dw
    phi = beta2 * w * w / 2.0 + beta3 * w * w * w / 6.0 + ripple
    return np.exp(1j * phi)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised Gaussian kernel of std `sigma` samples, ±3σ wide; empty = none."""
    if sigma <= 0.0:
        return np.zeros(0)
    half = math.ceil(3.0 * sigma)
    i = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-(i**2) / (2.0 * sigma * sigma))
    return k / k.sum()


def blur(inp: np.ndarray, kernel: Optional[np.ndarray]) -> np.ndarray:
    """optics.rs `blur` along the last axis of a batch: zero-padded
    convolution with an odd kernel (light falls off the edge). A loop over
    the few taps (7 for the default crosstalk and resolution), each a
    shifted multiply-add over the whole batch: for a kernel this short that
    beats a dense n×n matmul by ~10× (and does not depend on which BLAS
    numpy links)."""
    if kernel is None or kernel.size == 0:
        return inp
    n = inp.shape[-1]
    half = kernel.size // 2
    out = np.zeros_like(inp)
    for t, w in enumerate(kernel):
        d = t - half  # out[i] += w · inp[i + d]
        if d >= 0:
            out[..., : n - d] += w * inp[..., d:]
        else:
            out[..., -d:] += w * inp[..., : n + d]
    return out


def phase_matching(n: int, dw: float, gvm_l_fs: float) -> np.ndarray:
    """H_g = sinc(a/2)·e^{ia/2}, a = gvm·L·Ω_sum on the 2N−1 SH grid."""
    a = gvm_l_fs * (np.arange(2 * n - 1, dtype=np.float64) - (n - 1.0)) * dw
    h = a / 2.0
    small = np.abs(h) < 1e-12
    sinc = np.where(small, 1.0, np.sin(h) / np.where(small, 1.0, h))
    return sinc * np.exp(1j * h)


def spectral_bins(pixels: int, window: tuple[float, float], n: int) -> list[tuple[int, int]]:
    """model.rs `spectral_bins` + bins.rs `equal_bins`."""
    start = int(round_half_away(np.float64(window[0] * pixels)))
    end = int(round_half_away(np.float64(window[1] * pixels)))
    end = min(max(end, start + n), pixels)
    w = end - start
    return [(start + j * w // n, start + (j + 1) * w // n) for j in range(n)]


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Rust's `round` (ties away from zero); np.round rounds ties to even,
    which would move e.g. θ = 0.5 on a 63-level mask (31.5) differently."""
    r = np.round(v)
    t = np.trunc(v)
    tie = np.abs(v - t) == 0.5
    if np.any(tie):
        r = np.where(tie, t + np.sign(v), r)
    return r


# --- model.rs ----------------------------------------------------------------


class ShgNumpy:
    """One simulated SHG rig, `nominal` or `true`, batch-vectorised.

    `forward` equals `hilt_physics::forward` (quantise, compose the mask by
    the layout, one shot per row in order on the virtual clock)."""

    def __init__(self, cfg: ShgConfig, variant: str = "true", seed: int = 1,
                 conv: str = "fft") -> None:
        if variant not in ("nominal", "true"):
            raise ValueError(f"variant {variant!r}")
        if conv not in ("fft", "direct"):
            raise ValueError(f"conv {conv!r}")
        self.cfg, self.variant, self.conv = cfg, variant, conv
        n = cfg.n_channels
        self.n = n
        self.n_px = 2 * n - 1
        self.input_index, self.param_index, self.n_par = channel_map(cfg)
        self.has_in = self.input_index >= 0
        self.has_par = self.param_index >= 0
        self.in_idx = np.maximum(self.input_index, 0)
        self.par_idx = np.maximum(self.param_index, 0)
        self.input_scale = np.float32(cfg.input_scale if cfg.layout == "additive" else 1.0)
        dw = channel_step(cfg.center_nm, cfg.span_nm, n)
        # Shot noise and drift: numpy's stream for "seed, STREAM_NOISE".
        self.rng = np.random.default_rng([seed, STREAM_NOISE])
        self.clock = 0.0
        self.drift_value = 0.0
        self.registration: Optional[dict[str, object]] = None
        if variant == "nominal":
            self.source = source_field(n, cfg.source_fwhm, 0.0)
            self.phase: Optional[np.ndarray] = None  # exp(i·0) = 1
            self.xtalk: Optional[np.ndarray] = None
            self.levels = 0.0
            self.pm: Optional[np.ndarray] = None  # H = 1
            self.resolution: Optional[np.ndarray] = None
            self.drift_sigma = 0.0
        else:
            # Same draws in the same order as model.rs, from numpy's stream.
            mrng = np.random.default_rng([seed, STREAM_MISMATCH])

            def draw(spread: float) -> float:
                return 1.0 + spread * float(mrng.standard_normal())

            mm = cfg.mismatch
            shift = 2.5 * mm * (draw(1.0) - 1.0)
            fwhm = cfg.source_fwhm * draw(0.25 * mm)
            gains = np.array([max(draw(cfg.channel_gain_error), 0.0) for _ in range(n)])
            ripple = np.array([cfg.ripple_rad * (draw(1.0) - 1.0) for _ in range(n)])
            self.phase = spectral_phase(dw, cfg.beta2_fs2 * draw(mm), cfg.beta3_fs3 * draw(mm), ripple)
            self.xtalk = gaussian_kernel(max(cfg.crosstalk_channels * draw(mm), 0.0))
            gvm_l = cfg.gvm_fs_per_mm * cfg.crystal_mm * draw(0.25 * mm)
            creep = 1.0 if draw(1.0) >= 1.0 else -1.0
            self.registration = {
                "fwhm": fwhm,
                "gains": gains,
                "shift0": shift,
                "rate": creep * cfg.registration_drift_ch_per_h / 3600.0,
                "applied": shift,
            }
            self.source = self._registered_source(shift)
            self.levels = float((1 << cfg.mask_bits) - 1) if cfg.mask_bits > 0 else 0.0
            self.pm = phase_matching(n, dw, gvm_l)
            self.resolution = gaussian_kernel(cfg.resolution_px)
            self.drift_sigma = cfg.drift_sigma
        # Autoconvolution by FFT: the 2N−1 outputs fit in the next power of two.
        self.nfft = 1 << (self.n_px - 1).bit_length()
        # Calibration: the all-open reference spectrum at laser power 1.
        reference = self._pixels(np.ones((1, n)), self.source[None, :], None)[0]
        self.gain = cfg.reference_fill * cfg.full_well / reference.max()
        self.reference_total = self.gain * reference.sum()
        bins = spectral_bins(self.n_px, cfg.bin_window, cfg.n_bins)
        # Bin sums as one matmul: pixels @ bin_matrix.
        self.bin_matrix = np.zeros((self.n_px, cfg.n_bins))
        for j, (a, b) in enumerate(bins):
            self.bin_matrix[a:b, j] = 1.0
        self.bins = bins
        # Control grid of x and θ (true rig, blocked/interleaved only).
        self.control_levels: Optional[np.float32] = (
            np.float32((1 << cfg.mask_bits) - 1)
            if variant == "true" and cfg.layout != "additive" and cfg.mask_bits > 0
            else None
        )

    def _registered_source(self, shift: float) -> np.ndarray:
        """`Registration::source`: the envelope at `shift` times the pixel gains."""
        r = self.registration
        assert r is not None
        return source_field(self.n, r["fwhm"], shift) * r["gains"]  # type: ignore[operator]

    def _autoconvolution(self, e: np.ndarray) -> np.ndarray:
        """B_g = Σ_{k+l=g} E_k E_l for every row of `e` [B, N] → [B, 2N−1]."""
        n = self.n
        if self.conv == "fft":
            if np.isrealobj(e):
                f = np.fft.rfft(e, self.nfft, axis=1)
                return np.fft.irfft(f * f, self.nfft, axis=1)[:, : self.n_px]
            f = np.fft.fft(e, self.nfft, axis=1)
            return np.fft.ifft(f * f, axis=1)[:, : self.n_px]
        # Direct sum, a loop over the N channels (constant size), not samples.
        out = np.zeros((e.shape[0], self.n_px), dtype=e.dtype)
        for k in range(n):
            out[:, k : k + n] += e[:, k : k + 1] * e
        return out

    def _pixels(self, mask: np.ndarray, source: np.ndarray,
                field_noise: Optional[np.ndarray]) -> np.ndarray:
        """`Optics::sh_intensity` + the resolution blur for masks [B, N] (f64):
        quantise → crosstalk → field → χ(2) autoconvolution → |H·B|² → blur."""
        if self.levels > 0.0:
            mask = round_half_away(mask * self.levels) / self.levels
        mask = blur(mask, self.xtalk)
        amp = source * mask if field_noise is None else source * field_noise * mask
        field = amp if self.phase is None else self.phase * amp
        b = self._autoconvolution(field)
        if self.pm is not None:
            b = self.pm * b
        sh = b.real**2 + b.imag**2 if np.iscomplexobj(b) else b * b
        return blur(sh, self.resolution)

    def _sources(self, clocks: np.ndarray) -> np.ndarray:
        """`Registration::follow` before each shot: the source a shot at
        virtual time clocks[i] sees ([1, N] while it does not move, which is
        ~7200 shots at a time for the default creep)."""
        r = self.registration
        if r is None:
            return self.source[None, :]
        shifts = r["shift0"] + r["rate"] * clocks  # type: ignore[operator]
        starts, values = [0], [self.source]
        i = 0
        while True:  # one pass per re-registration, not per sample
            moved = np.abs(shifts[i:] - r["applied"]) >= REGISTRATION_STEP
            if not moved.any():
                break
            i += int(np.argmax(moved))
            r["applied"] = float(shifts[i])
            self.source = self._registered_source(float(shifts[i]))
            starts.append(i)
            values.append(self.source)
        if len(starts) == 1:
            return self.source[None, :]
        counts = np.diff(np.append(starts, len(clocks)))
        return np.repeat(np.stack(values), counts, axis=0)

    def _drift(self, b: int) -> np.ndarray:
        """`OrnsteinUhlenbeck::step` once per shot, v_i = a·v_{i−1} + c·z_i,
        in closed form v_i = a^i·(v_0 + Σ_{j≤i} a^{−j} c z_j), in chunks so
        a^{−j} stays near 1 (no draw at all for σ = 0, as in ou.rs)."""
        if self.drift_sigma == 0.0 or self.cfg.exposure_s <= 0.0:
            return np.full(b, self.drift_value)
        a = math.exp(-self.cfg.exposure_s / self.cfg.drift_tau_s)
        c = self.drift_sigma * math.sqrt(1.0 - a * a)
        z = self.rng.standard_normal(b)
        out = np.empty(b)
        chunk = max(1, min(b, int(1.0 / max(1e-300, -math.log(a)))))
        for s in range(0, b, chunk):  # one pass for any batch up to ~10⁵
            zz = z[s : s + chunk]
            j = np.arange(1, zz.size + 1, dtype=np.float64)
            ap = a**j
            out[s : s + zz.size] = ap * (self.drift_value + np.cumsum(c * zz / ap))
            self.drift_value = float(out[s + zz.size - 1])
        return out

    def forward(self, x: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """y [B, n_bins] (f32) and saturated [B] for x [B, n_in] and θ with
        one shared row or one row per sample (f32, as the wire carries them)."""
        cfg = self.cfg
        x = np.asarray(x, dtype=np.float32)
        theta = np.asarray(theta, dtype=np.float32).reshape(-1, self.n_par)
        b = x.shape[0]
        if self.control_levels is not None:  # PhysicalModel::quantize, in f32
            lv = self.control_levels
            x = (round_half_away(x * lv) / lv).astype(np.float32)
            theta = (round_half_away(theta * lv) / lv).astype(np.float32)
        # ControlEncoding::compose in f32, then into the f64 mask.
        v = np.where(self.has_in, self.input_scale * x[:, self.in_idx], np.float32(0.0))
        v = v + np.where(self.has_par, theta[:, self.par_idx], np.float32(0.0))
        mask = np.clip(v, np.float32(0.0), np.float32(1.0)).astype(np.float64)
        # Virtual clock before each shot: sequential adds, as `clock += exposure_s`.
        steps = np.full(b + 1, cfg.exposure_s)
        steps[0] = self.clock
        clocks = np.cumsum(steps)
        self.clock = float(clocks[-1])
        source = self._sources(clocks[:-1])
        noisy = self.variant == "true"
        field_noise = None
        if noisy and cfg.spectral_noise > 0.0:
            field_noise = np.maximum(1.0 + cfg.spectral_noise * self.rng.standard_normal((b, self.n)), 0.0)
        px = self._pixels(mask, source, field_noise)
        drift = self._drift(b)
        if not noisy:
            p2 = cfg.laser_power * cfg.laser_power
            px = px * (self.gain * p2)
            saturated = np.zeros(b, dtype=bool)
        else:
            jitter = self.rng.standard_normal(b)
            power = cfg.laser_power * (1.0 + drift) * (1.0 + cfg.power_noise * jitter)
            scale = self.gain * power * power
            signal = np.maximum(px * scale[:, None], 0.0)
            z = self.rng.standard_normal((b, self.n_px, 2))  # shot, read
            raw = signal + cfg.dark_counts + np.sqrt(signal) * z[..., 0] + cfg.read_noise * z[..., 1]
            adc = np.clip(round_half_away(raw), 0.0, cfg.full_well)
            saturated = (adc >= cfg.full_well).any(axis=1)
            px = adc - cfg.dark_counts
        y = (px @ self.bin_matrix) / self.reference_total
        return y.astype(np.float32), saturated


# --- bench -------------------------------------------------------------------


def bench_inputs(model: ShgNumpy, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The x and θ of benches/shg.rs: x[i, j] = ((7i + j) mod 13)/12, θ = 0.5."""
    i = np.arange(batch)[:, None]
    j = np.arange(model.cfg.n_in)[None, :]
    x = (((i * 7 + j) % 13).astype(np.float32) / np.float32(12.0)).astype(np.float32)
    theta = np.full((1, model.n_par), 0.5, dtype=np.float32)
    return x, theta


def time_numpy(variant: str, batch: int, repeats: int, min_time: float, conv: str) -> float:
    """Samples/s of `forward` at the bench's config: best of `repeats`
    timings, each of as many calls as fill `min_time` (best-of, because on a
    shared machine the minimum is the least disturbed estimate)."""
    model = ShgNumpy(ShgConfig(), variant, seed=1, conv=conv)
    x, theta = bench_inputs(model, batch)
    for _ in range(3):
        model.forward(x, theta)
    t0 = time.perf_counter()
    calls = 0
    while time.perf_counter() - t0 < min_time / 4 or calls < 2:
        model.forward(x, theta)
        calls += 1
    per = (time.perf_counter() - t0) / calls
    n = max(1, int(min_time / per))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            model.forward(x, theta)
        best = min(best, (time.perf_counter() - t0) / n)
    return batch / best


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_THRPT = re.compile(r"thrpt:\s*\[\s*([0-9.]+)\s*([KMG]?)elem/s\s+([0-9.]+)\s*([KMG]?)elem/s\s+([0-9.]+)\s*([KMG]?)elem/s\s*\]")
_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_criterion(text: str) -> dict[str, tuple[float, float, float]]:
    """Throughput per benchmark id from criterion's (0.5–0.8) terminal report:

        shg_64ch_batch256/true  time:   [1.6 ms 1.7 ms 1.7 ms]
                                thrpt:  [150.1 Kelem/s 154.2 Kelem/s 157.3 Kelem/s]

    An id longer than 23 characters is printed on its own line before
    `time:`. The change report's `thrpt:` line holds percentages, not
    elem/s, and is skipped. Returns elements/s (low, mid, high)."""
    out: dict[str, tuple[float, float, float]] = {}
    last_line, current = "", None
    for raw in text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if "time:" in line and "[" in line and "%" not in line:  # not the change report
            head = line.split("time:")[0].strip()
            current = head or last_line.strip()
        m = _THRPT.search(line)
        if m and current:
            g = m.groups()
            out[current] = tuple(float(g[i]) * _SCALE[g[i + 1]] for i in (0, 2, 4))  # type: ignore[assignment]
            current = None
        if line.strip() and "time:" not in line and "thrpt:" not in line:
            last_line = line
    return out


def run_rust_bench(path: str, filt: str, extra: list[str]) -> dict[str, tuple[float, float, float]]:
    """Runs the compiled criterion bench (`PATH --bench FILTER`) and parses it."""
    cmd = [path, "--bench", filt, "--color", "never", *extra]
    print("running:", " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"rust bench failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    res = parse_criterion(p.stdout)
    if not res:
        sys.exit(f"no throughput found in the rust bench's output:\n{p.stdout}")
    return res


def bench(args: argparse.Namespace) -> None:
    """numpy (and, given --rust-bench, Rust) samples/s side by side."""
    group = f"shg_64ch_batch{args.batch}"
    rust = run_rust_bench(args.rust_bench, args.rust_filter or group, args.rust_arg) if args.rust_bench else {}
    goal = 10.0
    for variant in args.variants:
        sps = time_numpy(variant, args.batch, args.repeats, args.min_time, args.conv)
        msg = f"{variant:8s} N=64 B={args.batch}: numpy {sps / 1e3:.1f} k samples/s"
        key = f"{group}/{variant}"
        if key in rust:
            r = rust[key][1]
            ratio = r / sps
            verdict = "meets" if ratio >= goal else "below"
            msg += f", rust {r / 1e3:.1f} k samples/s: {ratio:.1f} × ({verdict} the ≥ {goal:.0f} × goal)"
        elif rust:
            msg += f" (no rust result named {key}; got {', '.join(rust)})"
        print(msg)


# --- check -------------------------------------------------------------------


def check(path: str, conv: str) -> float:
    """Rebuilds the recorded device from its spec and replays x, θ (the
    applied values). Nominal: returns the max relative error against every
    repeat. True: the rig here is another draw of the same hardware, so only
    scale and noise level are compared (and reported, not asserted)."""
    d = np.load(path)
    spec = json.loads(bytes(d["spec_json"]).decode())
    if spec.get("kind") != "shg":
        sys.exit(f"{path}: device kind {spec.get('kind')!r}, not shg")
    cfg = ShgConfig.from_hyperparameters(spec["hyperparameters"])
    variant = spec["model"]
    model = ShgNumpy(cfg, variant, seed=int(spec.get("seed", 1)), conv=conv)
    enc = spec.get("encoding") or {}
    if enc:
        same = (list(model.input_index) == enc["input_index"]
                and list(model.param_index) == enc["param_index"])
        print(f"channel map equals the published encoding: {same}")
    x, theta, y = d["x"], d["theta"], d["y"]  # y: [R, B, n_out]
    print(f"{path}: device {spec['id']} ({variant}, {cfg.layout}, N={cfg.n_channels}, "
          f"{cfg.n_bins} bins), {x.shape[0]} samples × {y.shape[0]} repeats")
    if variant == "nominal":
        err = 0.0
        for rep in y:
            yn, _ = model.forward(x, theta)
            ref = rep.astype(np.float64)
            rel = np.abs(yn.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-30)
            err = max(err, float(rel.max()))
        print(f"max relative error vs rust: {err:.3e} (f32 output: ulp ≈ 6e-8)")
        return err
    yn = np.stack([model.forward(x, theta)[0] for _ in range(y.shape[0])]).astype(np.float64)
    yr = y.astype(np.float64)
    r = y.shape[0]
    for name, a in (("rust ", yr), ("numpy", yn)):
        noise = a.std(axis=0, ddof=1).mean() if r > 1 else float("nan")
        print(f"{name}: per-bin means {np.round(a.mean(axis=(0, 1)), 5)}, repeat noise std {noise:.3g}")
    rel = np.abs(yn.mean(axis=0) - yr.mean(axis=0)).mean() / np.abs(yr.mean(axis=0)).mean()
    print(f"mean |numpy − rust| / mean |rust| over samples: {rel:.3g}")
    if r > 1:
        # Per (sample, bin): difference of the repeat means in units of its
        # standard error. With identical hardware only the noise differs, so
        # |z| stays below ~sqrt(2 ln K) for K elements; mismatch draws that
        # differ (mismatch > 0) make it large.
        se = np.sqrt((yn.var(axis=0, ddof=1) + yr.var(axis=0, ddof=1)) / r)
        z = (yn.mean(axis=0) - yr.mean(axis=0)) / np.maximum(se, 1e-30)
        print(f"max |z| of repeat means: {np.abs(z).max():.2f} over {z.size} "
              f"(noise alone: ≲ {math.sqrt(2 * math.log(z.size)):.1f}); mean z {z.mean():+.3f}")
    hardware = ("mismatch", "channel_gain_error", "ripple_rad")
    if any(getattr(cfg, f) > 0 for f in hardware):
        print("the hardware draws (mismatch) differ from Rust's ChaCha8 stream: expect a few % difference")
    return rel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", metavar="NPZ", action="append", default=[],
                   help="compare with a `hilt collect` recording (repeatable)")
    p.add_argument("--tol", type=float, default=1e-5,
                   help="nominal --check fails above this max relative error")
    p.add_argument("--bench", action="store_true", help="time the numpy model")
    p.add_argument("--rust-bench", metavar="PATH",
                   help="compiled criterion bench (target/release/deps/shg-<hash>), run as PATH --bench FILTER")
    p.add_argument("--rust-filter", help="criterion filter (default: the group of benches/shg.rs)")
    p.add_argument("--rust-arg", action="append", default=[],
                   help="extra argument for the rust bench, e.g. --rust-arg=--measurement-time=3")
    p.add_argument("--variants", nargs="+", default=["nominal", "true"], choices=["nominal", "true"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per timing repeat")
    p.add_argument("--conv", choices=["fft", "direct"], default="fft",
                   help="autoconvolution: FFT (default) or the direct sum over channels")
    args = p.parse_args()
    if not args.check and not args.bench:
        p.error("give --bench and/or --check NPZ")
    failed = False
    for path in args.check:
        spec_model = json.loads(bytes(np.load(path)["spec_json"]).decode())["model"]
        err = check(path, args.conv)
        if spec_model == "nominal" and not err <= args.tol:
            print(f"FAIL: {err:.3e} > tol {args.tol:g}")
            failed = True
    if args.bench:
        bench(args)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
