"""The `smsgw` command as an operator runs it: real subprocesses against a running gateway."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from modem.simulator import Simulator
from tests.support.certificates import self_signed
from tests.support.cli import Box, smsgw
from tests.support.config_files import toml_text
from tests.support.gateway import gateway_config, run_gateway

PHONE = "+4915112345678"


async def test_version() -> None:
    result = await smsgw("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("smsgw ")
    assert result.stdout.split()[1][0].isdigit()


async def test_simulate_help_names_the_command_the_user_typed() -> None:
    result = await smsgw("simulate", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: smsgw simulate ")
    assert "python -m" not in result.stdout


@pytest.mark.slow
async def test_keys_create_prints_only_the_key_and_it_works(box: Box) -> None:
    result = await smsgw(
        "keys", "create", "--config", box.config, "--name", "ops", "--scope", "send,read,admin"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    key = lines[0]
    assert key.startswith("sgw_")
    assert key == key.strip()
    assert (await box.get(key, "/api/v1/status")).status_code == 200
    # admin scope: the operator's endpoints answer (404 for an unknown message, not 403).
    async with httpx.AsyncClient(base_url=box.base, headers={"Authorization": f"Bearer {key}"}) as client:
        r = await client.post("/api/v1/messages/msg_nope/resend")
    assert r.status_code == 404


@pytest.mark.slow
async def test_keys_create_with_a_narrow_scope_gets_403_outside_it(box: Box) -> None:
    result = await smsgw("keys", "create", "--config", box.config, "--name", "reader", "--scope", "read")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert (await box.get(key, "/api/v1/messages")).status_code == 200
    async with httpx.AsyncClient(base_url=box.base, headers={"Authorization": f"Bearer {key}"}) as client:
        r = await client.post("/api/v1/messages", json={"to": PHONE, "body": "not allowed"})
    assert r.status_code == 403


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["send,root", "", "write"])
async def test_keys_create_refuses_a_bad_scope(box: Box, scope: str) -> None:
    result = await smsgw("keys", "create", "--config", box.config, "--name", "bad", "--scope", scope)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "scope" in result.stderr
    listed = await smsgw("keys", "list", "--config", box.config)
    assert "\tbad\t" not in listed.stdout  # nothing was created


@pytest.mark.slow
async def test_keys_list_shows_keys_without_the_secret_and_revoke_locks_out(box: Box) -> None:
    key = (
        await smsgw("keys", "create", "--config", box.config, "--name", "app1", "--scope", "send")
    ).stdout.strip()
    assert (await box.get(key, "/api/v1/messages")).status_code == 403  # send only, authenticated
    listed = await smsgw("keys", "list", "--config", box.config)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout
    (line,) = [ln for ln in listed.stdout.splitlines() if "\tapp1\t" in ln]
    fields = line.split("\t")
    assert fields[1] == "app1"
    assert key.startswith(fields[2].rstrip("…"))  # the prefix, to recognise it
    assert len(fields[2].rstrip("…")) < len(key) // 2
    assert fields[3] == "send"
    assert fields[4] == "active"
    revoked = await smsgw("keys", "revoke", "--config", box.config, "app1")
    assert revoked.returncode == 0, revoked.stderr
    assert "app1" in revoked.stdout
    r = await box.get(key, "/api/v1/messages")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    listed = await smsgw("keys", "list", "--config", box.config)
    assert "revoked" in next(ln for ln in listed.stdout.splitlines() if "\tapp1\t" in ln)
    again = await smsgw("keys", "revoke", "--config", box.config, "app1")
    assert again.returncode == 1
    assert "no active key" in again.stderr
    # The fixture's own key still works: revoking one key touches no other.
    assert (await box.gw.client.get("/api/v1/messages")).status_code == 200


@pytest.mark.slow
async def test_send_wait_prints_the_id_and_delivered(box: Box) -> None:
    result = await smsgw(
        "send", "--config", box.config, PHONE, "from the shell", "--wait", env={"SMSGW_API_KEY": box.gw.key}
    )
    assert result.returncode == 0, result.stderr
    first, *_rest, last = result.stdout.splitlines()
    msg_id = first.split("\t")[0]
    assert msg_id.startswith("msg_")
    assert last == f"{msg_id}\tdelivered"
    assert (await box.gw.message(msg_id))["status"] == "delivered"
    assert box.gw.sim is not None
    assert box.gw.sim.network.phone(PHONE).texts() == ["from the shell"]


@pytest.mark.slow
async def test_send_reports_api_errors(box: Box) -> None:
    result = await smsgw(
        "send", "--config", box.config, "call me", "bad number", env={"SMSGW_API_KEY": box.gw.key}
    )
    assert result.returncode == 1
    assert "invalid_number" in result.stderr
    no_key = await smsgw("send", "--config", box.config, PHONE, "no key")
    assert no_key.returncode == 2
    assert "API key" in no_key.stderr
    assert f"smsgw keys create --config {box.config} " in no_key.stderr  # the hint runs as printed


@pytest.mark.slow
async def test_status_prints_the_verdict(box: Box) -> None:
    key_file = Path(box.config).parent / "api.key"
    key_file.write_text(box.gw.key + "\n")
    result = await smsgw("status", "--config", box.config, "--key-file", str(key_file))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "smsgw: HEALTHY"
    # One section a line, its text in one column; the modem's state, network and signal on its line.
    section = {ln.split()[0]: ln for ln in lines[1:] if ln and not ln.startswith(" ")}
    assert list(section) == ["gateway", "modems", "queue", "sent", "webhooks", "disk", "watchdog"], (
        result.stdout
    )
    assert len({len(ln) - len(ln.split(None, 1)[1]) for ln in section.values()}) == 1, result.stdout
    assert re.search(r"^modems +modem +ready, .*signal -\d+ dBm", section["modems"]), result.stdout
    assert re.search(r"^gateway +version \S+, up \d+ s$", section["gateway"]), result.stdout
    assert section["queue"].split(None, 1)[1] == "0 waiting", result.stdout
    assert "nothing sent yet" in section["sent"], result.stdout
    assert re.search(r"^disk +\d+\.\d [KMG]iB free of \d+\.\d [KMG]iB", section["disk"]), result.stdout
    assert "{" not in result.stdout, "no raw Python dict"


async def test_status_ages_read_in_words_after_a_send(box: Box) -> None:
    key_file = Path(box.config).parent / "api.key"
    key_file.write_text(box.gw.key + "\n")
    sent = await smsgw("send", "--config", box.config, "--key-file", str(key_file), "--wait", PHONE, "hi")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    result = await smsgw("status", "--config", box.config, "--key-file", str(key_file))
    assert re.search(
        r"^sent +last one \d+ s ago; 24 h: 1 sent, 1 delivered \(100 %\)$", result.stdout, re.M
    ), result.stdout
    assert re.search(r"^ +by status: 1 delivered$", result.stdout, re.M), result.stdout
    as_json = await smsgw("status", "--json", "--config", box.config, "--key-file", str(key_file))
    assert json.loads(as_json.stdout)["history"]["delivered"] == 1


@pytest.mark.slow
async def test_status_when_the_gateway_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text(toml_text(gateway_config(tmp_path, "/dev/nonexistent")))
    result = await smsgw("status", "--config", str(config), env={"SMSGW_API_KEY": "sgw_x"})
    assert result.returncode == 1
    assert "cannot reach the gateway" in result.stderr


@pytest.mark.slow
async def test_send_refuses_a_key_on_the_command_line(box: Box) -> None:
    """`ps` shows every argument to every user: --key is refused, naming what to use instead."""
    result = await smsgw("send", "--config", box.config, "--key", box.gw.key, PHONE, "leaky")
    assert result.returncode == 2
    assert "--key-file" in result.stderr
    assert "SMSGW_API_KEY" in result.stderr
    assert "process list" in result.stderr
    assert box.gw.sim is not None
    assert box.gw.sim.network.phone(PHONE).texts() == []  # nothing was sent with it
    status = await smsgw("status", "--config", box.config, "--key", box.gw.key)
    assert status.returncode == 2
    assert "--key-file" in status.stderr


@pytest.mark.slow
async def test_keys_import_from_stdin_is_idempotent_and_hashed(box: Box) -> None:
    vault_key = "vault-" + "k3y" * 12  # as a secrets manager would hand it over
    first = await smsgw(
        "keys", "import", "--config", box.config, "--name", "vaulted", "--scope", "send,read",
        stdin=(vault_key + "\n").encode(),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert vault_key not in first.stdout
    assert first.stdout.startswith("imported ")
    assert (await box.get(vault_key, "/api/v1/messages")).status_code == 200
    key_file = Path(box.config).parent / "vault.key"
    key_file.write_text(vault_key)
    again = await smsgw(
        "keys", "import", "--config", box.config, "--name", "vaulted", "--scope", "send,read",
        "--file", str(key_file),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already imported")
    listed = await smsgw("keys", "list", "--config", box.config)
    assert len([ln for ln in listed.stdout.splitlines() if "\tvaulted\t" in ln]) == 1
    assert vault_key not in listed.stdout
    for suffix in ("", "-wal"):  # stored hashed only, in the database and its log
        ledger = await asyncio.to_thread(Path(box.gw.config.store.path + suffix).read_bytes)
        assert vault_key.encode() not in ledger
    short = await smsgw("keys", "import", "--config", box.config, "--name", "weak", stdin=b"hunter2\n")
    assert short.returncode == 2
    assert "32" in short.stderr
    assert await smsgw("keys", "revoke", "--config", box.config, "vaulted") is not None
    revived = await smsgw(
        "keys", "import", "--config", box.config, "--name", "vaulted", stdin=vault_key.encode()
    )
    assert revived.returncode == 1
    assert "revoked" in revived.stderr
    assert (await box.get(vault_key, "/api/v1/messages")).status_code == 401


@pytest.mark.slow
async def test_keys_import_never_narrows_a_keys_scopes_and_says_what_it_kept(box: Box) -> None:
    vault_key = "vault-" + "r3ad" * 9
    # A key made before scopes narrowed `read` (migration 5 turned it into read_all) ...
    first = await smsgw(
        "keys", "import", "--config", box.config, "--name", "dashboard", "--scope", "send,read_all",
        stdin=vault_key.encode(),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    async with httpx.AsyncClient(base_url=box.base, timeout=10) as client:
        r = await client.post(
            "/api/v1/messages",
            json={"to": PHONE, "body": "not the dashboard's"},
            headers={"Authorization": f"Bearer {box.gw.key}"},
        )
        assert r.status_code == 202, r.text
    # ... then an inventory still listing `read` (the Ansible role runs this on every play).
    again = await smsgw(
        "keys", "import", "--config", box.config, "--name", "dashboard", "--scope", "send,read",
        stdin=vault_key.encode(),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already imported")
    assert "kept scopes not in the import: read_all" in again.stdout
    listed = await smsgw("keys", "list", "--config", box.config)
    assert [ln.split("\t")[3] for ln in listed.stdout.splitlines() if "\tdashboard\t" in ln] == [
        "read_all,send"
    ]
    seen = await box.get(vault_key, "/api/v1/messages")
    assert [m["body"] for m in seen.json()["messages"]] == ["not the dashboard's"]  # still reads everything
    # Wider scopes in the inventory are added.
    wider = await smsgw(
        "keys", "import", "--config", box.config, "--name", "dashboard", "--scope", "send,read,admin",
        stdin=vault_key.encode(),
    )  # fmt: skip
    assert wider.returncode == 0, wider.stderr
    assert "kept scopes not in the import: read_all" in wider.stdout
    listed = await smsgw("keys", "list", "--config", box.config)
    assert [ln.split("\t")[3] for ln in listed.stdout.splitlines() if "\tdashboard\t" in ln] == [
        "admin,read_all,send"
    ]


@pytest.mark.slow
async def test_keys_update_sets_quota_and_priority_and_both_are_audited(box: Box) -> None:
    key = (
        await smsgw(
            "keys", "create", "--config", box.config, "--name", "bulkapp", "--scope", "send",
            "--per-hour", "1", "--max-priority", "normal",
        )
    ).stdout.strip()  # fmt: skip
    async with httpx.AsyncClient(base_url=box.base, headers={"Authorization": f"Bearer {key}"}) as client:
        urgent = await client.post("/api/v1/messages", json={"to": PHONE, "body": "x", "priority": "high"})
        assert (urgent.status_code, urgent.json()["error"]["code"]) == (403, "priority_not_allowed")
        assert (await client.post("/api/v1/messages", json={"to": PHONE, "body": "one"})).status_code == 202
        over = await client.post("/api/v1/messages", json={"to": PHONE, "body": "two"})
        assert (over.status_code, over.json()["error"]["code"]) == (429, "quota_exceeded")
        assert 1 <= int(over.headers["retry-after"]) <= 3601
        updated = await smsgw("keys", "update", "--config", box.config, "bulkapp", "--per-hour", "unlimited")
        assert updated.returncode == 0, updated.stderr
        assert "unlimited/hour" in updated.stdout
        assert "priority up to normal" in updated.stdout  # untouched
        listed = await smsgw("keys", "list", "--long", "--config", box.config)
        (line,) = [ln for ln in listed.stdout.splitlines() if "\tbulkapp\t" in ln]
        assert line.split("\t")[4:] == ["unlimited/hour, unlimited/day, priority up to normal", "active"]
        assert (await client.post("/api/v1/messages", json={"to": PHONE, "body": "two"})).status_code == 202
    audit = (await box.gw.client.get("/api/v1/audit")).json()["events"]
    mine = [e for e in audit if e["actor"] == "cli"]
    assert [e["action"] for e in mine][:2] == ["key_update", "key_create"]
    assert all(e["source"] == "local" for e in mine)
    assert "bulkapp" in mine[0]["detail"]
    assert [e["action"] for e in audit if e["actor"] == "bulkapp"] == ["send", "send"]


def tls_config(tmp_path: Path, sim: Simulator, host: str, cert: Path, key: Path) -> dict[str, Any]:
    raw = gateway_config(tmp_path, str(sim.primary_path), api={"tls_cert": str(cert), "tls_key": str(key)})
    raw["api"]["listen"] = raw["api"]["listen"].replace("127.0.0.1:", f"{host}:")
    return raw


@pytest.mark.slow
async def test_send_and_status_over_tls_on_loopback(tmp_path: Path, sim: Simulator) -> None:
    """[api] tls_cert/tls_key: the CLI on the box speaks HTTPS to 127.0.0.1 (unverified, as the watchdog)."""
    cert, key = self_signed(tmp_path)
    raw = tls_config(tmp_path, sim, "127.0.0.1", cert, key)
    config = tmp_path / "smsgw.toml"
    config.write_text(toml_text(raw))
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        env = {"SMSGW_API_KEY": gw.key}
        sent = await smsgw("send", "--config", str(config), PHONE, "over tls", "--wait", env=env)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.splitlines()[-1].endswith("\tdelivered")
        assert sim.network.phone(PHONE).texts() == ["over tls"]
        status = await smsgw("status", "--config", str(config), env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.splitlines()[0] == "smsgw: HEALTHY"


@pytest.mark.slow
async def test_send_over_tls_verifies_the_gateway_against_the_configured_certificate(
    tmp_path: Path, sim: Simulator
) -> None:
    """Off loopback the configured (self-signed) certificate is the CA: the right one is trusted,
    a gateway it does not vouch for is refused before the key is sent."""
    cert, key = self_signed(tmp_path, "127.0.0.2")
    raw = tls_config(tmp_path, sim, "127.0.0.2", cert, key)
    config = tmp_path / "smsgw.toml"
    config.write_text(toml_text(raw))
    other_cert, other_key = self_signed(tmp_path, "127.0.0.3")
    stranger = tmp_path / "stranger.toml"
    stranger.write_text(
        toml_text(raw | {"api": raw["api"] | {"tls_cert": str(other_cert), "tls_key": str(other_key)}})
    )
    async with run_gateway(raw, sim) as gw:
        await gw.gateway.modem_list[0][2].wait_ready(10)
        env = {"SMSGW_API_KEY": gw.key}
        sent = await smsgw("send", "--config", str(config), PHONE, "verified", "--wait", env=env)
        assert sent.returncode == 0, sent.stderr
        assert sim.network.phone(PHONE).texts() == ["verified"]
        refused = await smsgw("send", "--config", str(stranger), PHONE, "not to a stranger", env=env)
        assert refused.returncode == 1
        assert "cannot reach the gateway at https://127.0.0.2:" in refused.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr


@pytest.mark.slow
async def test_templates_put_list_show_and_the_api_sends_with_it(box: Box) -> None:
    """An operator writes a template on the box; the running gateway sends with it at once."""
    put = await smsgw(
        "templates",
        "put",
        "alert",
        "--config",
        box.config,
        "--body",
        "ALERT {{ what }}",
        "--allowed-keys",
        "test",
    )
    assert (put.returncode, put.stdout) == (0, "alert v1\n"), put.stderr
    refused = await smsgw("templates", "put", "evil", "--config", box.config, "--body", "{{ 'x' * 9 }}")
    assert refused.returncode == 2
    assert "'*' is not available" in refused.stderr
    listed = await smsgw("templates", "list", "--config", box.config)
    assert listed.stdout == "alert\tv1\ttest\n"
    shown = await smsgw("templates", "show", "alert", "--config", box.config)
    assert json.loads(shown.stdout)["body"] == "ALERT {{ what }}"
    sent = await box.gw.send(to=PHONE, template="alert", vars={"what": "disk"})
    assert sent.status_code == 202, sent.text
    assert sent.json()["body"] == "ALERT disk"
    audit = await box.get(box.gw.key, "/api/v1/audit")
    assert ("template_create", "cli") in [(e["action"], e["actor"]) for e in audit.json()["events"]]
