"""PyTorch for hilt: twins written by ``hilt twin fit`` as modules, and a
:class:`PhysicalLayer` that trains on a leased device with Physics-Aware
Training (forward on the rig, backward through the twin's vector-Jacobian
product at the applied values).

Needs the ``torch`` extra (``pip install "./python[torch]"``): PyTorch and
safetensors.
"""

from hilt.torch.layer import PhysicalLayer, clamp_to, physics_aware, range_penalty
from hilt.torch.twin import LEAD, META_KEY, Twin, load_twin, same_device, spec_from_json

__all__ = [
    "PhysicalLayer",
    "Twin",
    "load_twin",
    "physics_aware",
    "range_penalty",
    "clamp_to",
    "same_device",
    "spec_from_json",
    "LEAD",
    "META_KEY",
]
