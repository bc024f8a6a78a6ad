"""status_callback: the box never calls itself, its loopback, link-local or multicast (SSRF), in any spelling."""

from __future__ import annotations

import socket

import httpx
import pytest
from starlette.applications import Starlette

from appliance.addrpolicy import AddressPolicy, PinnedTransport, literal_address
from appliance.api import create_app
from appliance.config import WebhookPolicyConfig
from appliance.ledger import Store
from tests.support.api_fakes import TEST_CONFIG, ClientFactory, FakeGateway, Keys, as_view


def own_lan_address() -> str:
    """This machine's address on its network (what a LAN peer would call the box)."""
    for probe in ("192.0.2.1", "10.255.255.254", "172.31.255.254", "192.168.255.254"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))  # UDP: no packet is sent, only a route is looked up
            except OSError:
                continue
            address = str(s.getsockname()[0])
            if not address.startswith("127."):
                return address
    pytest.fail("this machine has no non-loopback IPv4 address to test 'the box's own address' with")


REFUSED = [
    # (id, callback URL, a word the 422 must name)
    ("loopback", "http://127.0.0.1:8080/hook", "loopback"),
    ("loopback-other", "http://127.8.9.10/hook", "loopback"),
    ("hex", "http://0x7f000001/hook", "loopback"),
    ("decimal", "http://2130706433/hook", "loopback"),
    ("short", "http://127.1/hook", "loopback"),
    ("octal", "http://0177.0.0.1/hook", "loopback"),
    ("hex-dotted", "http://0x7f.0.0.1/hook", "loopback"),
    ("trailing-dot", "http://127.0.0.1./hook", "loopback"),
    ("v6-loopback", "http://[::1]:8080/hook", "loopback"),
    ("v4-mapped", "http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("localhost", "http://localhost:8025/faults", "loopback"),
    ("localhost-sub", "http://api.localhost/hook", "loopback"),
    ("metadata", "http://169.254.169.254/latest/meta-data/", "link-local"),
    ("v6-link-local", "http://[fe80::1]/hook", "link-local"),
    ("unspecified", "http://0.0.0.0:8080/hook", "unspecified"),
    ("zero", "http://0/hook", "unspecified"),
    ("multicast", "http://224.0.0.251/hook", "multicast"),
    ("v6-multicast", "http://[ff02::1]/hook", "multicast"),
    ("broadcast", "http://255.255.255.255/hook", "broadcast"),
]

ALLOWED = [
    ("lan", "http://192.168.1.20:8000/hook"),
    ("lan-10", "https://10.1.2.3/hook"),
    ("v6-ula", "http://[fd00::20]/hook"),
    ("name", "https://apps.example.lan/hook"),
    ("public", "https://93.184.215.14/hook"),
]


async def _post(client: httpx.AsyncClient, keys: Keys, callback: str) -> httpx.Response:
    return await client.post(
        "/api/v1/messages",
        json={"to": "+4915112345678", "body": "hello", "status_callback": callback},
        headers=keys.auth("send_read"),
    )


@pytest.mark.parametrize(("url", "word"), [(u, w) for _i, u, w in REFUSED], ids=[i for i, _u, _w in REFUSED])
async def test_forbidden_callback_is_refused_naming_the_field(
    client: httpx.AsyncClient, keys: Keys, url: str, word: str
) -> None:
    r = await _post(client, keys, url)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_field"
    assert error["message"].startswith("status_callback:")
    assert word in error["message"]


async def test_the_box_own_address_is_refused(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await _post(client, keys, f"http://{own_lan_address()}:8080/api/v1/messages")
    assert r.status_code == 422, r.text
    assert "own address" in r.json()["error"]["message"]


@pytest.mark.parametrize("url", [u for _i, u in ALLOWED], ids=[i for i, _u in ALLOWED])
async def test_lan_and_public_callbacks_stay_allowed(client: httpx.AsyncClient, keys: Keys, url: str) -> None:
    r = await _post(client, keys, url)
    assert r.status_code == 202, r.text
    assert r.json()["status_callback"] == url


async def test_allow_cidrs_readmit_refused_addresses(
    store: Store, gateway: FakeGateway, client_for: ClientFactory, keys: Keys
) -> None:
    config = TEST_CONFIG.__class__(
        **{**TEST_CONFIG.__dict__, "webhook_policy": WebhookPolicyConfig(allow=("127.0.0.0/8", "::1/128"))}
    )
    app: Starlette = create_app(store=store, config=config, gateway=as_view(gateway))
    client = await client_for(app)
    for url in ("http://127.0.0.1:9000/hook", "http://0x7f000001/hook", "http://[::1]/hook"):
        r = await _post(client, keys, url)
        assert r.status_code == 202, (url, r.text)
    r = await _post(client, keys, "http://169.254.169.254/")  # what the CIDRs do not cover stays refused
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0300.0250.1.1", "192.168.1.1"),
        ("192.168.0x1.1", "192.168.1.1"),
        ("example.com", None),
        ("08.1.1.1", None),  # not octal: a resolver refuses it as a number, too
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
    ],
)
def test_literal_addresses_are_read_as_resolvers_read_them(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (None if found is None else str(found)) == address


async def test_connect_time_check_sees_what_a_name_resolves_to() -> None:
    """A name passes the request check; what it resolves to (here: this box) is checked on connect."""
    name = socket.gethostname()
    policy = AddressPolicy()
    assert policy.check_host(name) is None  # a name: nothing to say at request time
    with pytest.raises(httpx.ConnectError) as refused:
        async with httpx.AsyncClient(transport=PinnedTransport(policy)) as client:
            await client.post(f"http://{name}:9/hook", content=b"{}")
    assert "refused" in str(refused.value)
