"""Webhook URL safety (SSRF): schemes, IPv4/IPv6 ranges, names that resolve to them, the loopback option."""

from __future__ import annotations

import pytest

from trio_streams.durable import DurableStreamError
from trio_streams.durable._webhook_url import check_webhook_url


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def refused(url: str, **options: object) -> None:
    with pytest.raises(DurableStreamError) as error:
        await check_webhook_url(url, **options)  # type: ignore[arg-type]
    assert (error.value.status, error.value.code) == (400, "WEBHOOK_URL_REJECTED")


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "127.0.0.1",
        "127.9.9.9",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[fe80::1]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[::]",
        "[ff02::1]",
        "[::ffff:10.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[64:ff9b::a00:1]",
        "[2002:a00:1::]",
    ],
)
async def test_local_and_private_addresses_are_refused(host: str) -> None:
    await refused(f"https://{host}/hook")


@pytest.mark.parametrize("address", ["10.1.2.3", "::1", "fe80::1%eth0", "169.254.169.254"])
async def test_a_name_that_resolves_to_a_local_address_is_refused(address: str) -> None:
    await refused("https://hooks.example/hook", resolve=resolver("93.184.216.34", address))


async def test_public_https_is_allowed_and_connects_to_the_checked_address() -> None:
    target = await check_webhook_url("https://hooks.example:8443/a/b?x=1", resolve=resolver("93.184.216.34"))
    assert (target.scheme, target.host, target.port, target.target, target.address) == (
        "https",
        "hooks.example",
        8443,
        "/a/b?x=1",
        "93.184.216.34",
    )
    v6 = await check_webhook_url("https://[2606:4700::1111]/", resolve=resolver())
    assert v6.address == "2606:4700::1111"


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/h",
        "ftp://hooks.example/h",
        "https://user:pw@hooks.example/h",
        "https:///h",
        "nonsense",
    ],
)
async def test_bad_forms_are_refused(url: str) -> None:
    await refused(url, resolve=resolver("93.184.216.34"))


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    async def fail(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    await refused("https://nowhere.example/h", resolve=fail)


async def test_loopback_http_only_behind_the_option() -> None:
    await refused("http://127.0.0.1:8080/hook")
    await refused("https://localhost/hook", resolve=resolver("127.0.0.1"))
    target = await check_webhook_url("http://127.0.0.1:8080/hook", allow_loopback_http=True)
    assert (target.scheme, target.address, target.port) == ("http", "127.0.0.1", 8080)
    assert (await check_webhook_url("http://localhost/h", allow_loopback_http=True)).address == "127.0.0.1"
    # The option is loopback only: private ranges and plain http elsewhere stay refused.
    await refused("http://10.0.0.1/hook", allow_loopback_http=True)
    await refused("https://192.168.0.1/hook", allow_loopback_http=True)
    await refused("http://hooks.example/h", allow_loopback_http=True, resolve=resolver("127.0.0.1"))


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example/\u00e9",  # (not ASCII: the request line cannot carry it)
        "https://hooks.example/a b",
        "https://hooks.example/h\r\nX-Injected: 1",
        "https://hooks.example\x00.evil/h",  # (getaddrinfo would resolve up to the NUL)
        "https://hooks.example/\x7f",
    ],
)
async def test_urls_with_characters_a_request_cannot_carry_are_refused(url: str) -> None:
    await refused(url, resolve=resolver("93.184.216.34"))
    await refused(url.replace("https://hooks.example", "http://127.0.0.1"), allow_loopback_http=True)


async def test_a_host_name_idna_cannot_encode_is_refused_not_a_500() -> None:
    # The real resolver: a label longer than 63 characters is a UnicodeError in idna.
    await refused("https://" + "a" * 300 + ".example/h")
