"""The sandbox's own signatures: the published examples, the providers' code, and independence.

The simulators must never sign or verify with the provider clients' code (a shared mistake would
pass both ways), so the last test reads every sandbox module's imports.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import random
from pathlib import Path
from typing import Any

import pytest

import shopkeys.sandbox
from shopkeys.providers import aliexpress as ali_provider
from shopkeys.providers import ecwid as ecwid_provider
from shopkeys.providers import tiktok_shop as tts_provider
from shopkeys.sandbox import ecwid as ecwid_sim
from shopkeys.sandbox import tiktok_shop as tts_sim
from shopkeys.sandbox.signatures import (
    aliexpress_sign,
    ecwid_webhook_signature,
    tiktok_shop_sign,
    tiktok_shop_signs_body,
    tiktok_shop_webhook_signature,
)

#: What a sandbox module may import from `shopkeys.providers` and below: module -> names.
ALLOWED_PROVIDER_IMPORTS: dict[str, frozenset[str]] = {
    "shopkeys.providers": frozenset({"Platform"})
}

SANDBOX_DIR = Path(shopkeys.sandbox.__file__).parent

# -- published examples -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "signer", [aliexpress_sign, ali_provider.sign], ids=["sandbox", "provider"]
)
def test_aliexpress_documented_example(signer: Any) -> None:
    # The IOP "HTTP request sample": GetOrder signed with the app secret "helloworld".
    params = {
        "access_token": "test",
        "app_key": "123456",
        "order_id": "1234",
        "sign_method": "sha256",
        "timestamp": "1517820392000",
    }
    expected = "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A"
    assert signer("helloworld", "/order/get", params) == expected
    # `sign` never signs itself.
    assert signer("helloworld", "/order/get", {**params, "sign": expected}) == expected


def test_aliexpress_documented_sort_order() -> None:
    # The "Signature algorithm" page: foo=1, bar=2, foo_bar=3, foobar=4 sort as
    # bar, foo, foo_bar, foobar ("_" is before "b" in ASCII) behind the API name.
    params = {"foo": "1", "bar": "2", "foo_bar": "3", "foobar": "4"}
    message = b"/test/apibar2foo1foo_bar3foobar4"
    expected = hmac.new(b"helloworld", message, hashlib.sha256).hexdigest().upper()
    assert aliexpress_sign("helloworld", "/test/api", params) == expected


def test_aliexpress_business_api_name_is_not_a_prefix() -> None:
    params = {"method": "aliexpress.merchant.profile.get", "app_key": "1"}
    message = b"app_key1methodaliexpress.merchant.profile.get"
    expected = hmac.new(b"s", message, hashlib.sha256).hexdigest().upper()
    assert aliexpress_sign("s", "aliexpress.merchant.profile.get", params) == expected


def test_tiktok_shop_sdk_example() -> None:
    # EcomPHP/tiktokshop-php's `testPrepareSignature` (a GET, so no body).
    expected = "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
    assert tiktok_shop_sign("app_secret", "/test-api", {"foo": "bar"}) == expected


def test_tiktok_shop_documented_example() -> None:
    # The worked example of "Sign your API request", as quoted by a public test suite.
    params = {"app_key": "29a39d", "timestamp": "1623812664"}
    expected = "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8"
    assert tiktok_shop_sign("e59af819cc", "/authorization/202309/shops", params) == expected
    noisy = {**params, "sign": "stale", "access_token": "TTP_x"}
    assert tiktok_shop_sign("e59af819cc", "/authorization/202309/shops", noisy) == expected


def test_tiktok_shop_body_and_webhook_by_hand() -> None:
    body = b'{"order_id":"1"}'
    message = b"k/p" + b"a1" + body + b"k"
    assert tiktok_shop_sign("k", "/p", {"a": "1"}, body) == (
        hmac.new(b"k", message, hashlib.sha256).hexdigest()
    )
    expected = hmac.new(b"secret", b"key" + body, hashlib.sha256).hexdigest()
    assert tiktok_shop_webhook_signature("key", "secret", body) == expected


@pytest.mark.parametrize(
    ("method", "content_type", "signed"),
    [
        ("GET", None, False),
        ("get", "application/json", False),
        ("POST", "application/json", True),
        ("POST", None, True),
        ("PUT", "application/json; charset=utf-8", True),
        ("POST", "multipart/form-data; boundary=xyz", False),
        ("POST", "Multipart/Form-Data", False),
        ("DELETE", "application/x-www-form-urlencoded", True),
    ],
)
def test_tiktok_shop_which_bodies_are_signed(
    method: str, content_type: str | None, signed: bool
) -> None:
    assert tiktok_shop_signs_body(method, content_type) is signed


def test_ecwid_documented_example() -> None:
    # The client secret of Ecwid's PHP example, with an event of the documented shape.
    signature = ecwid_webhook_signature(
        "abcde123456789", 1234567, "123456-1234-1234-1234-123412341234"
    )
    assert signature == "seOLnh4E7fSA59kaKP8pYPaj37xn4s0ZoPfBbfqKOjs="
    # eventCreated arrives as a JSON number; as a string it signs the same.
    same = ecwid_webhook_signature(
        "abcde123456789", "1234567", "123456-1234-1234-1234-123412341234"
    )
    assert same == signature
    assert len(base64.b64decode(signature)) == 32


# -- the sandbox and the providers agree on many generated inputs -----------------------------

CASES = 400

# Pieces that make signing mistakes show: sort-order traps, separators, empty strings, non-ASCII.
_KEY_PARTS = ["a", "b", "foo", "foo_bar", "foobar", "_", "A", "Z", "z", "1", "é", "中", "sign_"]
_VALUE_PARTS = [
    "",
    "0",
    "x y",
    "a=b&c",
    "%20",
    "+",
    "/",
    ".",
    "é",
    "中文",
    "😀",
    "עברית",
    "e\u0301",
    "\n",
    "\t",
    '"',
    "{}",
]
_CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----x",
    "Multipart/Form-Data; boundary=y",
    "text/plain",
]
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "get", "post"]
_API_NAMES = [
    "/auth/token/create",
    "/auth/token/refresh",
    "/order/get",
    "/",
    "",
    "aliexpress.merchant.profile.get",
    "aliexpress.solution.order.get",
    "x",
]


def _text(rng: random.Random, parts: list[str], most: int) -> str:
    return "".join(rng.choice(parts) for _ in range(rng.randint(0, most)))


def _key(rng: random.Random) -> str:
    return _text(rng, _KEY_PARTS, 3) or "k"


def _params(rng: random.Random, *always: str) -> dict[str, str]:
    params = {_key(rng): _text(rng, _VALUE_PARTS, 4) for _ in range(rng.randint(0, 8))}
    for key in always:
        if rng.random() < 0.5:
            params[key] = _text(rng, _VALUE_PARTS, 3)
    return params


def _body(rng: random.Random) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        return b""
    if kind == 1:
        data = {_key(rng): _text(rng, _VALUE_PARTS, 3) for _ in range(rng.randint(1, 4))}
        return json.dumps(data, ensure_ascii=rng.random() < 0.5).encode()
    return rng.randbytes(rng.randint(1, 64))


def test_aliexpress_agrees_with_the_provider() -> None:
    rng = random.Random(20240611)
    for _ in range(CASES):
        secret = _text(rng, _VALUE_PARTS, 3)
        api = rng.choice(_API_NAMES)
        params = _params(rng, "sign", "method", "session", "access_token")
        mine = aliexpress_sign(secret, api, params)
        assert mine == ali_provider.sign(secret, api, params), (api, params)
        assert mine == mine.upper() and len(mine) == 64


def test_tiktok_shop_agrees_with_the_provider() -> None:
    rng = random.Random(20240612)
    for _ in range(CASES):
        secret = _text(rng, _VALUE_PARTS, 3)
        path = rng.choice(["/authorization/202309/shops", "/order/202309/orders/search", "/"])
        query = _params(rng, "sign", "access_token", "app_key", "timestamp", "shop_cipher")
        method = rng.choice(_METHODS)
        content_type = rng.choice(_CONTENT_TYPES)
        raw = _body(rng)
        signed = tiktok_shop_signs_body(method, content_type)
        assert signed == tts_provider.signs_body(method, content_type), (method, content_type)
        body = raw if signed else b""
        mine = tiktok_shop_sign(secret, path, query, body)
        assert mine == tts_provider.sign(secret, path, query, body), (path, query, body)
        assert mine == mine.lower() and len(mine) == 64


def test_tiktok_shop_webhooks_agree_with_the_provider() -> None:
    rng = random.Random(20240613)
    for _ in range(CASES):
        key, secret, body = _text(rng, _VALUE_PARTS, 3), _text(rng, _VALUE_PARTS, 3), _body(rng)
        mine = tiktok_shop_webhook_signature(key, secret, body)
        assert mine == tts_provider.webhook_signature(key, secret, body)


def test_ecwid_webhooks_agree_with_the_provider() -> None:
    rng = random.Random(20240614)
    for _ in range(CASES):
        secret = _text(rng, _VALUE_PARTS, 3)
        created: int | str = rng.choice([rng.randint(0, 2**40), str(rng.randint(0, 2**40))])
        event_id = rng.choice([_text(rng, _VALUE_PARTS, 4), str(rng.getrandbits(128))])
        mine = ecwid_webhook_signature(secret, created, event_id)
        assert mine == ecwid_provider.signature(secret, created, event_id)


def test_the_simulators_name_the_same_paths_and_headers() -> None:
    # Defined separately on purpose; a mismatch would also break the end-to-end tests.
    assert tts_sim.TOKEN_GET_PATH == tts_provider.TOKEN_GET_PATH
    assert tts_sim.TOKEN_REFRESH_PATH == tts_provider.TOKEN_REFRESH_PATH
    assert tts_sim.SHOPS_PATH == tts_provider.SHOPS_PATH
    assert tts_sim.ACCESS_TOKEN_HEADER == tts_provider.ACCESS_TOKEN_HEADER
    assert ecwid_sim.SIGNATURE_HEADER == ecwid_provider.SIGNATURE_HEADER


# -- no sandbox module borrows the providers' code --------------------------------------------


def forbidden_imports(source: str, module: str) -> list[str]:
    """Each import from `shopkeys.providers*` in `source` that the allowed set does not cover.

    `module` is the dotted name of the module the source belongs to, to resolve relative imports.
    """
    package = module.rsplit(".", 1)[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {alias.name}" for alias in node.names if _is_providers(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, target] if target else base)
            allowed = ALLOWED_PROVIDER_IMPORTS.get(target, frozenset())
            for alias in node.names:
                if _is_providers(target):
                    bad = alias.name not in allowed
                else:
                    # `from shopkeys import providers` brings in the whole package.
                    bad = _is_providers(f"{target}.{alias.name}")
                if bad:
                    found.append(f"from {target} import {alias.name}")
    return found


def _is_providers(name: str) -> bool:
    return name == "shopkeys.providers" or name.startswith("shopkeys.providers.")


def test_the_import_check_catches_what_it_should() -> None:
    here = "shopkeys.sandbox.example"
    assert forbidden_imports("from shopkeys.providers import Platform", here) == []
    assert forbidden_imports("from shopkeys.providers_extra import x", here) == []
    assert forbidden_imports("from shopkeys.providers.aliexpress import sign", here) == [
        "from shopkeys.providers.aliexpress import sign"
    ]
    assert forbidden_imports("from shopkeys.providers import Platform, base", here) == [
        "from shopkeys.providers import base"
    ]
    assert forbidden_imports("import shopkeys.providers.tiktok_shop as t", here) == [
        "import shopkeys.providers.tiktok_shop"
    ]
    assert forbidden_imports("from ..providers.ecwid import signature", here) == [
        "from shopkeys.providers.ecwid import signature"
    ]
    assert forbidden_imports("from .. import providers", here) == ["from shopkeys import providers"]
    assert forbidden_imports("from shopkeys.providers import Platform as N", here) == []
    nested = "def f():\n    from shopkeys.providers.ecwid import SIGNATURE_HEADER\n"
    assert forbidden_imports(nested, here) == [
        "from shopkeys.providers.ecwid import SIGNATURE_HEADER"
    ]


def test_no_sandbox_module_imports_provider_code() -> None:
    modules = sorted(SANDBOX_DIR.rglob("*.py"))
    assert len(modules) >= 5, "the sandbox package was not found where expected"
    problems: list[str] = []
    for path in modules:
        relative = path.relative_to(SANDBOX_DIR.parent.parent).with_suffix("")
        module = ".".join(relative.parts)
        if path.name == "__init__.py":
            module += ".__init__"  # so relative imports resolve from the package itself
        source = path.read_text(encoding="utf-8")
        problems += [f"{path.name}: {line}" for line in forbidden_imports(source, module)]
    assert not problems, "sandbox modules import provider code:\n" + "\n".join(problems)
