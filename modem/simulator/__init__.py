"""A simulated modem (AT over pseudo-terminals or TCP) with a simulated network behind it.

```python
async with Simulator("/run/smsgw-sim", model="quectel-ec25", submit_latency_s=0) as sim:
    serial.Serial(str(sim.primary_path))            # a client talks AT to it
    await sim.inject(sender="+4917612345678", text="hi")   # +CMTI: "SM",1
    sim.network.phone("+4915112345678").inbox       # what the modem sent, reassembled
```
Models: "quectel-ec25" (default), "sim800", "huawei-e3372", "fibocom-g510", "zte-k3565",
"telit-le910", "generic" (quirks per model in `device` and `models`). Standalone runner and
control interface: `python -m modem.simulator --help` (see `modem.simulator.control`).
"""

from __future__ import annotations

from modem.simulator.device import (
    MODELS,
    AtFail,
    Delivery,
    FakeModem,
    GenericModem,
    HuaweiE3372,
    ModelProfile,
    QuectelEC25,
    Sim800,
    SimState,
    Simulator,
    Storage,
    Stored,
    handles,
)
from modem.simulator.models import FibocomG510, TelitLE910, ZteK3565
from modem.simulator.network import InboxMessage, Network, NetworkEvent, Phone, Policy
from modem.simulator.variants import CommandVariants

__all__ = [
    "MODELS",
    "AtFail",
    "CommandVariants",
    "Delivery",
    "FakeModem",
    "FibocomG510",
    "GenericModem",
    "HuaweiE3372",
    "InboxMessage",
    "ModelProfile",
    "Network",
    "NetworkEvent",
    "Phone",
    "Policy",
    "QuectelEC25",
    "Sim800",
    "SimState",
    "Simulator",
    "Storage",
    "Stored",
    "TelitLE910",
    "ZteK3565",
    "handles",
]
