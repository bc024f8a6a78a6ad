"""The OpenAPI 3.1 document matches the app's /api/v1 routes; schemathesis finds no 5xx or schema break."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from starlette.routing import Route

from appliance import openapi
from tests.support.gateway import Running


def app_routes(app: object) -> set[tuple[str, str]]:
    out = set()
    for route in getattr(app, "routes", []):
        if isinstance(route, Route) and route.path.startswith("/api/v1/"):
            out |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return out


async def test_spec_paths_equal_routes(gw: Running) -> None:
    r = await gw.client.get("/api/v1/openapi.json", headers={"Authorization": ""})
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    spec = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    from appliance.api import create_app  # noqa: PLC0415

    app = create_app(store=gw.gateway.store, config=gw.config, gateway=gw.gateway)
    assert spec == app_routes(app)
    assert spec == {(p, m) for p, ops in openapi.PATHS.items() for m in ops}


@pytest.mark.slow
@pytest.mark.timeout(150)  # hit 60 s once on the shared 2-core machine (load 8)
async def test_schemathesis_finds_no_server_error(gw: Running, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    base = f"http://{gw.config.api.listen}"
    proc = await asyncio.create_subprocess_exec(
        st,
        "run",
        f"{base}/api/v1/openapi.json",
        f"--url={base}",
        f"--header=Authorization: Bearer {gw.key}",
        "--checks=not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples=15",
        "--phases=examples,fuzzing",
        "--workers=1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 55)
    assert proc.returncode == 0, out.decode()[-6000:]
    text = out.decode()
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    assert selected is not None, text[-3000:]
    assert selected.group(1) == selected.group(2), text[-3000:]
    assert f"Tested: {selected.group(1)}" in text, text[-3000:]  # every operation was exercised


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_schemathesis_stateful_with_keys_of_every_scope_finds_no_cross_key_read(
    gw: Running, tmp_path: Path
) -> None:
    """Two tenants (alice, bob: send,read) must never see each other's messages (object-level
    authorization); a send-only, a read_all and an admin key are next in line for the operations the
    first refuses, so every scope is exercised. Examples, fuzzing and the stateful phase (POST a
    message, then GET/cancel it by id)."""
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    store = gw.gateway.store
    users = []
    keys: dict[str, str] = {}
    for name, scopes in [
        ("alice", ["send", "read"]),
        ("bob", ["send", "read"]),
        ("sender", ["send"]),
        ("watcher", ["read_all"]),
        ("ops", ["admin"]),
    ]:
        _rec, key = await store.create_key(name, scopes)
        keys[name] = key
        users.append({"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {key}"}]})
    for tenant in ("bob", "sender"):  # messages alice must never see, whatever schemathesis sends
        r = await gw.client.post(
            "/api/v1/messages",
            json={"to": "+4915112345678", "body": f"{tenant}'s own"},
            headers={"Authorization": f"Bearer {keys[tenant]}"},
        )
        assert r.status_code == 202
    (tmp_path / "auth.json").write_text(json.dumps({"auth": users}))
    (tmp_path / "schemathesis.toml").write_text('[auth.wfc]\npath = "auth.json"\npeers = ["alice", "bob"]\n')
    base = f"http://{gw.config.api.listen}"
    proc = await asyncio.create_subprocess_exec(
        st,
        "run",
        f"{base}/api/v1/openapi.json",
        f"--url={base}",
        "--checks=not_a_server_error,object_level_authorization,response_schema_conformance",
        "--max-examples=10",
        "--phases=examples,fuzzing,stateful",
        "--workers=1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 140)
    text = out.decode()
    assert proc.returncode == 0, text[-6000:]
    assert "object_level_authorization will not run" not in text.replace("`", ""), text[-3000:]
    assert re.search(r"Stateful\s", text), text[-3000:]  # the stateful phase ran
    # Alice sent messages: the check had her objects to probe as bob (it fails on a GET by id that
    # leaks; a leak in the list too it takes for sharing by design, so the lists are checked here).
    ids = {k.name: k.id for k in await store.list_keys()}
    everything = await store.list_messages(limit=1000)
    assert any(m.key_id == ids["alice"] for m in everything), text[-3000:]
    for tenant in ("alice", "bob"):
        r = await gw.client.get(
            "/api/v1/messages", params={"limit": 200}, headers={"Authorization": f"Bearer {keys[tenant]}"}
        )
        own = {m.id for m in everything if m.key_id == ids[tenant]}
        assert {m["id"] for m in r.json()["messages"]} == own  # 0 cross-key reads
