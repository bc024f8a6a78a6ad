"""Prometheus metrics: `smsgw_` names with units, `_total` counters, never a phone number in a label.

`Metrics` owns one CollectorRegistry per app (tests build several apps). It holds
the event counters the dispatcher, inbound handler and webhook sender increment,
plus ledger-derived series that are taken from the status document at scrape
time, so `/metrics` and `/api/v1/status` never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.states import FINAL, State
from appliance.status import registered as is_registered
from modem import ModemState

# Statuses a message passes at most once: counts of messages that reached them only grow.
_REACHED = {
    State.SENT: (State.SENT, State.DELIVERED, State.UNDELIVERED),
    **{s: (s,) for s in FINAL},
}


class Metrics:
    """Counters others increment (`metrics.sends_total.labels(result="ok").inc()`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.accepted_total = Counter(
            "smsgw_messages_accepted",
            "Messages committed to the ledger, by source (api, alertmanager, twilio, ...).",
            ["source"],
            registry=self.registry,
        )
        self.sends_total = Counter(
            "smsgw_sends",
            "Send attempts of one message, by result (ok, transient, permanent, modem_down).",
            ["result"],
            registry=self.registry,
        )
        self.send_errors_total = Counter(
            "smsgw_send_errors",
            "Failed send attempts by error code (cms_38, timeout, ...).",
            ["code"],
            registry=self.registry,
        )
        self.reports_total = Counter(
            "smsgw_reports",
            "Status reports received, by class (delivered, trying, failed, unmatched).",
            ["status_class"],
            registry=self.registry,
        )
        self.inbound_total = Counter(
            "smsgw_inbound_messages", "Received messages committed to the ledger.", registry=self.registry
        )
        self.webhook_deliveries_total = Counter(
            "smsgw_webhook_deliveries",
            "Webhook delivery attempts, by result (ok, retry, abandoned).",
            ["result"],
            registry=self.registry,
        )
        self.balance_check_failures_total = Counter(
            "smsgw_sim_balance_check_failures",
            "Failed SIM balance checks ([ussd]), by modem and kind (timeout, refused, not_found, modem).",
            ["modem", "kind"],
            registry=self.registry,
        )
        # Per modem (label `modem`, its configured name): what each of several modems carries.
        self.modem_parts_sent_total = Counter(
            "smsgw_modem_parts_sent",
            "Parts this modem handed to the network (+CMGS), since the daemon started.",
            ["modem"],
            registry=self.registry,
        )
        self.modem_messages_sent_total = Counter(
            "smsgw_modem_messages_sent",
            "Messages whose last part this modem handed to the network, since the daemon started.",
            ["modem"],
            registry=self.registry,
        )
        self.modem_send_failures_total = Counter(
            "smsgw_modem_send_failures",
            "Failed send attempts on this modem, by result (transient, permanent, modem_down).",
            ["modem", "result"],
            registry=self.registry,
        )
        for result in ("ok", "transient", "permanent"):
            self.sends_total.labels(result=result)
        for result in ("ok", "retry", "abandoned"):
            self.webhook_deliveries_total.labels(result=result)
        for status_class in ("delivered", "trying", "failed", "unmatched"):
            self.reports_total.labels(status_class=status_class)
        self.accepted_total.labels(source="api")
        self._snapshot = _StatusCollector()
        self.registry.register(self._snapshot)

    def add_modem(self, name: str) -> None:
        """Give a modem its per-modem series at 0 from the start (a rate over a missing series is empty)."""
        self.modem_parts_sent_total.labels(modem=name)
        self.modem_messages_sent_total.labels(modem=name)
        for result in ("transient", "permanent", "modem_down"):
            self.modem_send_failures_total.labels(modem=name, result=result)

    def count_send(self, modem: str, result: str) -> None:
        """One send attempt on `modem`: `smsgw_sends` and its per-modem series (a part sent, or a failure)."""
        self.sends_total.labels(result=result).inc()
        if result == "ok":
            self.modem_parts_sent_total.labels(modem=modem).inc()
        else:
            self.modem_send_failures_total.labels(modem=modem, result=result).inc()

    def observe_status(self, status: dict[str, Any]) -> None:
        """Take ledger and modem figures from a status document (appliance.status.build_status)."""
        self._snapshot.status = status

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class _StatusCollector(Collector):
    """Series derived from the last status document; empty until one is observed."""

    def __init__(self) -> None:
        self.status: dict[str, Any] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: its families depend on the document

    def collect(self) -> Iterable[Metric]:
        doc = self.status
        if doc is None:
            return
        queue = doc["queue"]
        by_status: dict[str, int] = queue["by_status"]
        current = GaugeMetricFamily(
            "smsgw_ledger_messages", "Messages in the ledger by current status.", labels=["status"]
        )
        for status, n in sorted(by_status.items()):
            current.add_metric([status], n)
        yield current
        reached = CounterMetricFamily(
            "smsgw_messages",
            "Messages in the ledger that reached a status (sent, or a final one).",
            labels=["status"],
        )
        for status, members in _REACHED.items():
            reached.add_metric([status.value], sum(by_status.get(m.value, 0) for m in members))
        yield reached
        yield GaugeMetricFamily(
            "smsgw_queue_depth", "Messages waiting (queued, scheduled or sending).", value=queue["depth"]
        )
        oldest = queue["oldest_age_s"]
        yield GaugeMetricFamily(
            "smsgw_queue_oldest_age_seconds",
            "Age of the oldest queued or sending message (0 when none).",
            value=0.0 if oldest is None else float(oldest),
        )
        yield CounterMetricFamily(
            "smsgw_ambiguous_sends",
            "Parts whose outcome was unknown after a crash (maybe sent twice).",
            value=queue["ambiguous_total"],
        )
        yield CounterMetricFamily(
            "smsgw_reports_lost",
            "Messages that became final without their status report (report_timeout): reports lost.",
            value=queue.get("reports_lost_total", 0),
        )
        yield CounterMetricFamily(
            "smsgw_quarantined_pdus",
            "Undecodable PDUs committed to the quarantine before the modem deleted them.",
            value=queue.get("quarantined_total", 0),
        )
        yield GaugeMetricFamily(
            "smsgw_webhook_backlog", "Webhook deliveries waiting.", value=doc["webhooks"]["backlog"]
        )
        up = GaugeMetricFamily("smsgw_modem_up", "1 when the modem is ready.", labels=["modem"])
        registered = GaugeMetricFamily(
            "smsgw_modem_registered", "1 when the modem is registered on a network.", labels=["modem"]
        )
        signal = GaugeMetricFamily("smsgw_modem_signal_dbm", "Signal strength in dBm.", labels=["modem"])
        for i, modem in enumerate(doc["modems"]):
            name = _modem_name(i, modem)
            up.add_metric([name], 1.0 if modem.get("state") == "ready" else 0.0)
            registered.add_metric([name], 1.0 if is_registered(modem) else 0.0)
            dbm = (modem.get("signal") or {}).get("dbm")
            if isinstance(dbm, int | float):
                signal.add_metric([name], float(dbm))
        yield up
        yield registered
        yield signal
        yield from _modem_series(doc["modems"])
        yield from _balance_series(doc["modems"])
        last = doc["throughput"].get("last_sent_age_s")
        if last is not None:
            yield GaugeMetricFamily(
                "smsgw_last_send_age_seconds",
                "Seconds since a part was last accepted by the network.",
                value=last,
            )
        yield GaugeMetricFamily(
            "smsgw_disk_free_bytes", "Free bytes on the ledger's filesystem.", value=doc["disk"]["free_bytes"]
        )
        yield GaugeMetricFamily(
            "smsgw_uptime_seconds", "Seconds since the daemon started.", value=doc["gateway"]["uptime_s"]
        )
        verdict = GaugeMetricFamily(
            "smsgw_verdict", "1 for the current verdict (healthy, degraded, down).", labels=["state"]
        )
        for state in ("healthy", "degraded", "down"):
            verdict.add_metric([state], 1.0 if doc["verdict"]["state"] == state else 0.0)
        yield verdict
        incidents = (doc.get("watchdog") or {}).get("incidents") or []
        yield GaugeMetricFamily(
            "smsgw_watchdog_open_incidents",
            "Watchdog incidents not yet resolved (from the status document; 0 when none).",
            value=sum(1 for i in incidents if not _closed(i)),
        )
        info = GaugeMetricFamily("smsgw_build_info", "Build of this smsgw.", labels=["version"])
        info.add_metric([doc["gateway"]["version"]], 1.0)
        yield info


def _modem_name(i: int, modem: dict[str, Any]) -> str:
    """The `modem` label: its configured name (the port, or its place, when it has none)."""
    return str(modem.get("name") or modem.get("port") or f"modem{i}")


def _modem_series(modems: list[dict[str, Any]]) -> Iterable[Metric]:
    """Per modem: its state (1 for the current one) and its traffic from the ledger."""
    state = GaugeMetricFamily(
        "smsgw_modem_state", "1 for the modem's current connection state.", labels=["modem", "state"]
    )
    sent = GaugeMetricFamily(
        "smsgw_modem_messages_sent_last_hour",
        "Messages this modem sent (all parts accepted) in the last hour, from the ledger.",
        labels=["modem"],
    )
    failed = GaugeMetricFamily(
        "smsgw_modem_messages_failed_last_hour",
        "Messages last tried on this modem that ended failed or undelivered in the last hour.",
        labels=["modem"],
    )
    in_flight = GaugeMetricFamily(
        "smsgw_modem_in_flight_messages", "Messages this modem is sending now.", labels=["modem"]
    )
    age = GaugeMetricFamily(
        "smsgw_modem_last_send_age_seconds",
        "Seconds since this modem last had a part accepted by the network (absent: none in 24 h).",
        labels=["modem"],
    )
    for i, modem in enumerate(modems):
        name = _modem_name(i, modem)
        current = modem.get("state")
        for s in ModemState:
            state.add_metric([name, s.value], 1.0 if current == s.value else 0.0)
        traffic = modem.get("traffic")
        if not isinstance(traffic, dict):
            continue
        sent.add_metric([name], float(traffic["sent"]))
        failed.add_metric([name], float(traffic["failed"]))
        in_flight.add_metric([name], float(traffic["in_flight"]))
        if traffic.get("last_sent_age_s") is not None:
            age.add_metric([name], float(traffic["last_sent_age_s"]))
    yield state
    yield sent
    yield failed
    yield in_flight
    yield age


def _balance_series(modems: list[dict[str, Any]]) -> Iterable[Metric]:
    """The SIM balance per modem (the last amount the [ussd] check found) and when it was read."""
    value = GaugeMetricFamily(
        "smsgw_sim_balance", "Prepaid SIM balance last read by USSD ([ussd] check).", labels=["modem"]
    )
    at = GaugeMetricFamily(
        "smsgw_sim_balance_checked_timestamp_seconds",
        "Unix time of the reading smsgw_sim_balance shows.",
        labels=["modem"],
    )
    for i, modem in enumerate(modems):
        balance = modem.get("balance") or {}
        if balance.get("value") is None or not balance.get("at"):
            continue
        name = _modem_name(i, modem)
        value.add_metric([name], float(balance["value"]))
        at.add_metric([name], datetime.fromisoformat(str(balance["at"])).timestamp())
    yield value
    yield at


def _closed(incident: Any) -> bool:
    """Whether a status document's watchdog incident has ended (resolved_at or closed_at set)."""
    return isinstance(incident, dict) and bool(incident.get("resolved_at") or incident.get("closed_at"))
