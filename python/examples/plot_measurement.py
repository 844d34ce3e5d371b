#!/usr/bin/env python3
# %% [markdown]
# # One measurement, plotted
#
# A notebook-style walk through the client (run it as a script, or cell by
# cell in an editor that knows `# %%`): connect to hiltd, look at what a
# device publishes, measure a sweep of one input channel with repeats, and
# plot the mean with its spread. Saves a PNG (matplotlib's Agg backend: no
# display needed).
#
#     python examples/plot_measurement.py --server 127.0.0.1:50051 --out sweep.png

# %%
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import hilt  # noqa: E402

ap = argparse.ArgumentParser(description="Measure an input sweep on a device and plot it")
ap.add_argument("--server", default=os.environ.get("HILT_SERVER", "127.0.0.1:50051"))
ap.add_argument("--device", default="shg-readout")
ap.add_argument("--channel", type=int, default=0, help="the input swept")
ap.add_argument("--points", type=int, default=41)
ap.add_argument("--repeats", type=int, default=4)
ap.add_argument("--out", default="measurement.png")
args = ap.parse_args()

# %% Connect and look at the device.
client = hilt.Client(args.server)
spec = client.describe(args.device).spec
print(f"{spec.id}: {spec.kind}, {spec.n_in} inputs in [{spec.input_range.min}, {spec.input_range.max}] "
      f"{spec.input_unit}, {spec.n_par} parameters, {spec.n_out} outputs ({spec.output_unit})")

# %% Sweep one input from the bottom to the top of its range; the other
# inputs sit mid-range and θ at the middle of its range.
r = spec.input_range
sweep = np.linspace(r.min, r.max, args.points, dtype=np.float32)
x = np.full((args.points, spec.n_in), (r.min + r.max) / 2, dtype=np.float32)
x[:, args.channel] = sweep
theta = np.full(spec.n_par, (spec.param_range.min + spec.param_range.max) / 2, dtype=np.float32)
with client.lease(args.device, ttl=30) as dev:
    m = dev.execute(x, theta, repeats=args.repeats, return_repeats=True)
print(f"measured {m.y.shape[0]} rows × {args.repeats} repeats, calibration {m.calibration_id}, "
      f"{int(m.clamped.sum())} rows clamped, {int(m.saturated.sum())} saturated")

# %% Plot each output against the swept input, with ±1 std of the repeats.
fig, ax = plt.subplots(figsize=(7, 4))
std = m.std if m.std is not None else np.zeros_like(m.y)
for k in range(m.y.shape[1]):
    ax.plot(m.applied_x[:, args.channel], m.y[:, k], label=f"out {k}")
    ax.fill_between(m.applied_x[:, args.channel], m.y[:, k] - std[:, k], m.y[:, k] + std[:, k], alpha=0.25)
ax.set_xlabel(f"input {args.channel} ({spec.input_unit})")
ax.set_ylabel(spec.output_unit or "output")
ax.set_title(f"{spec.id}: input {args.channel} swept, mean ± std of {args.repeats} repeats")
if m.y.shape[1] <= 12:
    ax.legend(fontsize="small", ncol=2)
fig.tight_layout()
fig.savefig(args.out, dpi=120)
client.close()
print(f"wrote {args.out}")
