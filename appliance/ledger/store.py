"""The ledger's front: one `Store` object composed of the concept modules over one connection.

Every write goes through the one writer connection (`Connection`); the concept modules are mixins
that share it, so a caller holds one object (`store.accept(...)`, `store.get(...)`) and the
single-writer design stays one object's property.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.ledger.balance import Balances
from appliance.ledger.escalations import Escalations
from appliance.ledger.fleet import Fleet
from appliance.ledger.inbound import Received
from appliance.ledger.keys import Keys
from appliance.ledger.messages import Messages
from appliance.ledger.retention import Purge
from appliance.ledger.sending import Sending
from appliance.ledger.telemetry import Telemetry
from appliance.ledger.templates import Templates
from appliance.ledger.threads import Threads

if TYPE_CHECKING:
    from appliance.ledger.backend import LedgerBackend


class Store(
    Messages, Fleet, Sending, Received, Threads, Keys, Telemetry, Balances, Purge, Templates, Escalations
):
    """The ledger. One connection: every write is serialised through it (one writer)."""


if TYPE_CHECKING:
    # mypy checks that Store implements the whole backend interface (backend.py).
    def _implements(store: Store) -> LedgerBackend:
        return store
