"""``hilt.torch.load_twin`` predicts what the Rust twin predicts.

Reference: ``hilt twin predict`` on the recording the twin was fitted on.
Relative error here is ``max |y_python − y_rust| / max |y_rust|`` over every
row and output of the recording (both float32); it must stay under 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hilt
from hilt.torch import PhysicalLayer, load_twin, physics_aware
from conftest import Daemon, run_hilt

KINDS = {"shg-readout": "mlp", "shg-hidden": "mlp", "plate-hidden": "waveform", "circuit-hidden": "waveform"}


@pytest.mark.parametrize("device", sorted(KINDS))
def test_twin_predicts_what_rust_predicts(device: str, fitted_twins: dict, tmp_path) -> None:  # type: ignore[no-untyped-def]
    npz, st = fitted_twins[device]
    pred = tmp_path / "pred.npz"
    run_hilt("twin", "predict", "--twin", str(st), "--data", str(npz), "--out", str(pred))
    ref = np.load(pred)
    twin = load_twin(st)
    assert twin.kind == KINDS[device] and twin.spec.id == device
    with torch.no_grad():
        y = twin(torch.from_numpy(ref["x"]), torch.from_numpy(ref["theta"])).numpy()
    y_rust = ref["y_pred"]
    assert y.shape == y_rust.shape and y.dtype == np.float32
    rel = float(np.abs(y - y_rust).max() / np.abs(y_rust).max())
    print(f"{device} ({twin.kind}): max relative deviation {rel:.2e}")
    assert rel < 1e-5, f"{device}: {rel:.3e}"


@pytest.mark.parametrize("device", ["shg-readout", "plate-hidden"])
def test_twin_gradients_match_finite_differences(device: str, fitted_twins: dict) -> None:
    """PAT's backward pass is this module's VJP: check it in float64."""
    twin = load_twin(fitted_twins[device][1], dtype=torch.float64)
    s = twin.spec
    g = torch.Generator().manual_seed(0)
    lo, hi = s.input_range.min, s.input_range.max
    x = (torch.rand(3, s.n_in, generator=g, dtype=torch.float64) * 0.8 + 0.1) * (hi - lo) + lo
    th = (torch.rand(1, s.n_par, generator=g, dtype=torch.float64) - 0.5) * 0.6
    x.requires_grad_(True)
    th.requires_grad_(True)
    r = torch.randn(3, s.n_out, generator=g, dtype=torch.float64)
    (gx, gt) = torch.autograd.grad((twin(x, th) * r).sum(), [x, th])
    eps = 1e-6
    for (t, grad, idx) in [(x, gx, (1, 3)), (x, gx, (2, 0)), (th, gt, (0, 5)), (th, gt, (0, s.n_par - 1))]:
        with torch.no_grad():
            t[idx] += eps
            up = (twin(x, th) * r).sum()
            t[idx] -= 2 * eps
            down = (twin(x, th) * r).sum()
            t[idx] += eps
        num = float((up - down) / (2 * eps))
        assert abs(float(grad[idx]) - num) <= 1e-5 * (1 + abs(num)), (idx, float(grad[idx]), num)


def test_physical_layer_is_pat(hiltd: Daemon, fitted_twins: dict) -> None:
    """Forward: exactly the measurement. Backward: the twin's VJP at the
    applied x and θ (here x has values outside the range, so applied ≠ sent)."""
    twin = load_twin(fitted_twins["shg-readout"][1])
    with hilt.Client(hiltd.addr) as c, c.lease("shg-readout") as dev:
        layer = PhysicalLayer(dev, twin, generator=torch.Generator().manual_seed(3))
        x = torch.rand(6, 12, generator=torch.Generator().manual_seed(4)) * 1.2 - 0.1
        x.requires_grad_(True)
        out = layer(x)
        m = layer.last
        assert m is not None
        np.testing.assert_allclose(out.detach().numpy(), m.y, rtol=1e-6, atol=1e-7)
        assert m.applied_x.min() >= 0 and m.applied_x.max() <= 1
        w = torch.randn(6, 7, generator=torch.Generator().manual_seed(5))
        (out * w).sum().backward()
        ax = torch.from_numpy(m.applied_x).requires_grad_(True)
        at = torch.from_numpy(m.applied_theta).requires_grad_(True)
        gx, gt = torch.autograd.grad((twin(ax, at) * w).sum(), [ax, at])
        assert x.grad is not None and layer.theta.grad is not None
        np.testing.assert_allclose(x.grad.numpy(), gx.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(layer.theta.grad.numpy(), gt.numpy(), rtol=1e-5, atol=1e-7)
        # The functional form gives the same, and twin mode never measures.
        y2 = physics_aware(twin, x.detach(), layer.theta.detach(), m)
        np.testing.assert_allclose(y2.numpy(), m.y, rtol=1e-6, atol=1e-7)
        done = c.describe("shg-readout").status.batches_done
        layer.mode = "twin"
        layer(x)
        assert c.describe("shg-readout").status.batches_done == done
        # A twin of another device is refused.
        with pytest.raises(ValueError, match="shg-hidden"):
            PhysicalLayer(dev, load_twin(fitted_twins["shg-hidden"][1]))
