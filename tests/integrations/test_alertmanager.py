"""The real Prometheus Alertmanager notifies the box; amtool alerts become SMS on the on-call phone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modem.simulator import Simulator
from tests.support.gateway import Running, gateway_config, run_gateway
from tests.support.ports import free_port
from tests.support.system_tools import tool
from tests.support.waiting import eventually

ONCALL = "+4915199990000"


@pytest.fixture
async def box(tmp_path: Path, sim: Simulator) -> AsyncIterator[Running]:
    raw = gateway_config(tmp_path, str(sim.primary_path), watchdog={"oncall": [ONCALL]})
    async with run_gateway(raw, sim) as running:
        await running.gateway.modem_list[0][2].wait_ready(10)
        yield running


@contextlib.asynccontextmanager
async def alertmanager(tmp_path: Path, box: Running) -> AsyncIterator[str]:
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        f"""
global:
  resolve_timeout: 1m
route:
  receiver: smsgw
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: smsgw
    webhook_configs:
      - url: http://{box.config.api.listen}/api/v1/alertmanager
        send_resolved: true
        http_config:
          basic_auth:
            username: alertmanager
            password: {box.key}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        tool("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: _ready(box, url), 20, 0.1)
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def _ready(box: Running, url: str) -> bool:
    try:
        r = await box.client.get(f"{url}/-/ready", headers={"Authorization": ""})
    except OSError:
        return False
    except Exception:  # noqa: BLE001  (httpx connection errors while it starts)
        return False
    return r.status_code == 200


async def amtool(url: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        tool("amtool"),
        *args,
        f"--alertmanager.url={url}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


@pytest.mark.slow
async def test_amtool_alert_becomes_sms_and_resolves(tmp_path: Path, box: Running, sim: Simulator) -> None:
    phone = sim.network.phone(ONCALL)
    labels = ["alertname=DiskFull", "instance=db1:9100", "severity=critical", "job=node"]
    async with alertmanager(tmp_path, box) as url:
        await amtool(url, "alert", "add", *labels, "--annotation=summary=Disk almost full on db1")
        firing = await eventually(lambda: [t for t in phone.texts() if t.startswith("FIRING")], 20)
        assert firing == [
            "FIRING: DiskFull (1 firing)\ninstance=db1:9100 severity=critical job=node\nDisk almost full on db1"
        ]
        await amtool(url, "alert", "add", *labels, "--end=2000-01-01T00:00:00Z")
        resolved = await eventually(lambda: [t for t in phone.texts() if t.startswith("RESOLVED")], 20)
        assert resolved[0].startswith("RESOLVED: DiskFull (1 resolved)\ninstance=db1:9100")
    assert len(phone.texts()) == 2


async def test_repeated_notification_is_sent_once(box: Running, sim: Simulator) -> None:
    """Alertmanager HA peers or a retry deliver the same notification twice: one SMS."""
    doc = {
        "version": "4",
        "groupKey": '{}:{alertname="ProbeFailure"}',
        "status": "firing",
        "receiver": "smsgw",
        "groupLabels": {"alertname": "ProbeFailure"},
        "commonLabels": {"alertname": "ProbeFailure", "instance": "web1", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ProbeFailure", "instance": "web1", "severity": "critical"},
                "annotations": {},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "1a30ba71cca2921f",
            }
        ],
    }
    first = await box.client.post("/api/v1/alertmanager", json=doc)
    assert first.status_code == 202, first.text
    again = await box.client.post("/api/v1/alertmanager", json=doc)
    assert again.status_code == 200, again.text
    assert again.json()["messages"][0]["duplicate"] is True
    other = await box.client.post(
        f"/api/v1/alertmanager?to={'%2B4915100000001'}", json={**doc, "status": "resolved"}
    )
    assert other.status_code == 202, other.text
    msg_id = first.json()["messages"][0]["id"]
    await box.final(msg_id)
    assert sim.network.phone(ONCALL).texts() == [first.json()["text"]]
    grafana = {
        **doc,
        "version": "1",
        "orgId": 1,
        "title": "[FIRING:1]",
        "groupKey": "{}:{}",
        "state": "alerting",
    }
    g = await box.client.post(
        "/api/v1/alertmanager", json=grafana, headers={"Authorization": f"Bearer {box.key}"}
    )
    assert g.status_code == 202, g.text


async def test_cannot_accept_is_503_and_bad_payload_is_400(tmp_path: Path, sim: Simulator) -> None:
    raw = gateway_config(tmp_path, str(sim.primary_path), watchdog={"oncall": [ONCALL]}, api={"queue_max": 0})
    async with run_gateway(raw, sim) as running:
        doc = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "X"}}]}
        r = await running.client.post("/api/v1/alertmanager", json=doc)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"]
        bad = await running.client.post("/api/v1/alertmanager", json={"alerts": []})
        assert bad.status_code == 400
        anon = await running.client.post("/api/v1/alertmanager", json=doc, headers={"Authorization": ""})
        assert anon.status_code == 401


@pytest.mark.slow
async def test_a_megabyte_notification_is_one_bounded_sms(box: Running, sim: Simulator) -> None:
    """27,000 alert names in ~1 MB: answered with one SMS that lists a few and counts the rest."""
    names = [f"A{i:05d}" for i in range(27_000)]
    doc = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "smsgw",
        "alerts": [{"labels": {"alertname": n}} for n in names],
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert 900_000 < len(body) <= 1 << 20
    r = await box.client.post(
        "/api/v1/alertmanager", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 202, r.text
    answer = r.json()
    assert len(answer["messages"]) == 1
    assert answer["segments"] <= box.config.alertmanager.max_segments
    text = answer["text"]
    assert text.startswith("FIRING: A00000, A00001")
    assert len(text) <= 153 * box.config.alertmanager.max_segments
    assert f"+{27_000 - box.config.alertmanager.max_alerts} more" in text
    phone = sim.network.phone(ONCALL)
    assert await eventually(phone.texts, 20) == [text]


async def test_a_lone_surrogate_in_a_label_is_a_400(box: Running) -> None:
    body = b'{"status": "firing", "alerts": [{"labels": {"alertname": "Disk\\ud800Full"}}]}'
    r = await box.client.post(
        "/api/v1/alertmanager", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_json"


def _notification(group: str, **labels: str) -> dict[str, Any]:
    """An Alertmanager webhook v4 body as Alertmanager posts it, one firing alert."""
    return {
        "version": "4",
        "groupKey": group,
        "status": "firing",
        "receiver": "smsgw",
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", **labels},
        "commonAnnotations": {"summary": "Disk almost full on db1"},
        "externalURL": "http://am:9093",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "DiskFull", **labels},
                "annotations": {"summary": "Disk almost full on db1"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"fp{group}",
            }
        ],
    }


async def test_a_template_writes_the_alert_sms_and_a_missing_one_falls_back(
    tmp_path: Path, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """`[alertmanager] template`: the SMS comes from the template with the alert's fields; while it
    does not exist, or when it fails to render, the built-in text goes out and one line is logged."""
    raw = gateway_config(
        tmp_path, str(sim.primary_path), watchdog={"oncall": [ONCALL]}, alertmanager={"template": "oncall"}
    )
    phone = sim.network.phone(ONCALL)
    async with run_gateway(raw, sim) as box:
        await box.gateway.modem_list[0][2].wait_ready(10)
        with caplog.at_level(logging.WARNING, logger="appliance.alertmanager"):
            before = await box.client.post("/api/v1/alertmanager", json=_notification("1", instance="db1"))
        assert before.status_code == 202, before.text
        assert before.json()["text"].startswith("FIRING: DiskFull (1 firing)")
        assert [r.getMessage() for r in caplog.records] == [
            "alertmanager: template 'oncall' ([alertmanager] template) does not exist; the built-in text is sent"
        ]
        body = "[{{ status | upper }}] {{ alertname }} on {{ labels.instance }}: {{ summary }} ({{ count }})"
        made = await box.client.put("/api/v1/templates/oncall", json={"body": body})
        assert made.status_code == 201, made.text
        templated = await box.client.post("/api/v1/alertmanager", json=_notification("2", instance="db2"))
        assert templated.status_code == 202, templated.text
        text = "[FIRING] DiskFull on db2: Disk almost full on db1 (1)"
        assert templated.json()["text"] == text
        msg = await box.final(templated.json()["messages"][0]["id"])
        assert msg["template"] == {"name": "oncall", "version": 1}
        assert text in await eventually(lambda: len(phone.texts()) == 2 and phone.texts(), 10)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="appliance.alertmanager"):
            no_label = await box.client.post("/api/v1/alertmanager", json=_notification("3"))
        assert no_label.status_code == 202, no_label.text
        assert no_label.json()["text"].startswith("FIRING: DiskFull (1 firing)")
        assert [r.getMessage() for r in caplog.records] == [
            "alertmanager: template 'oncall' v1: 'instance' is missing from an object variable; "
            "the built-in text is sent"
        ]
