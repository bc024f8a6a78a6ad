"""The OpenAPI 3.1 document matches the app's /api/v1 routes; schemathesis finds no 5xx or schema break."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

from starlette.routing import Route

from appliance import openapi
from tests.system.conftest import Running


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
