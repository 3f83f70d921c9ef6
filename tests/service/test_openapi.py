"""`/openapi.json` is complete and accurate: every route, its response and error models, the
API key scheme, and every reference resolves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi.routing import APIRoute

from shopkeys.web import api, hot_path, proxy
from shopkeys.web.schemas import ErrorResponse, TokenOut
from tests.conftest import LiveService

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture
async def document(live_service: LiveService, http: httpx2.AsyncClient) -> dict[str, Any]:
    answer = await http.get(f"{live_service.url}/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    data: dict[str, Any] = answer.json()
    return data


def served_operations() -> set[tuple[str, str]]:
    """(method, path) of every documented route the app has: the API, health, the hot path."""
    found = {("get", hot_path.PATH)}
    found |= {(m.lower(), proxy.OPENAPI_PATH) for m in proxy.METHODS if m != "HEAD"}
    for router in (api.router, api.health_router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            found |= {(m.lower(), route.path) for m in route.methods if route.include_in_schema}
    return found


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def json_schema_ref(response: dict[str, Any]) -> str:
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref


async def test_every_route_is_documented(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "shopkeys"
    documented = {(method, path) for method, path, _ in operations(document)}
    assert documented == served_operations()
    assert ("get", "/v1/connections/{connection_id}/token") in documented
    # No browser-facing page and no sandbox route pretends to be part of the API.
    assert not [p for p in document["paths"] if p.startswith(("/oauth", "/connect", "/sandbox"))]


async def test_references_resolve(document: dict[str, Any]) -> None:
    found = list(refs(document))
    assert ERROR_REF in found
    for ref in found:
        resolve(document, ref)
    # Nothing left over from FastAPI's own error shape, which the API never answers with.
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


async def test_security_scheme(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["ApiKey"]["description"],
    }
    for method, path, operation in operations(document):
        if path.startswith("/v1/"):
            assert operation.get("security") == [{"ApiKey": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
        else:
            assert "security" not in operation, (method, path)


async def test_response_and_error_models(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        successes = [s for s in responses if s.startswith("2")]
        assert len(successes) == 1, (method, path)
        [success] = successes
        if success == "204" or path == proxy.OPENAPI_PATH:
            # No content of ours: nothing, or the platform's own answer.
            assert "content" not in responses[success]
        else:
            schema = responses[success]["content"]["application/json"]["schema"]
            if schema.get("type") == "array":  # a list of a model (the events)
                schema = schema["items"]
            assert resolve(document, schema["$ref"])["type"] == "object", (method, path)
        errors = [s for s in responses if not s.startswith("2")]
        if path.startswith("/v1/"):
            assert errors, (method, path)
        for status in errors:
            assert json_schema_ref(responses[status]) == ERROR_REF, (method, path, status)
            assert responses[status]["description"], (method, path, status)
        # Path parameters are declared.
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


async def test_hot_path_entry(document: dict[str, Any]) -> None:
    operation = document["paths"][hot_path.PATH]["get"]
    assert json_schema_ref(operation["responses"]["200"]) == "#/components/schemas/TokenOut"
    assert set(operation["responses"]) == {"200", "401", "404", "409", "429", "502"}
    token = resolve(document, "#/components/schemas/TokenOut")
    assert set(token["properties"]) == set(TokenOut.model_fields)
    error = resolve(document, ERROR_REF)
    assert set(error["properties"]) == set(ErrorResponse.model_fields)


async def test_answers_match_the_document(
    document: dict[str, Any], live_service: LiveService, http: httpx2.AsyncClient
) -> None:
    """The hot path answers exactly the fields its schema declares, and errors the error shape."""
    imported = await http.post(
        f"{live_service.url}/v1/connections/import",
        json={"provider": "aliexpress", "access_token": "50000doc", "account_id": "7"},
        headers=live_service.headers,
    )
    assert imported.status_code == 201, imported.text
    cid = imported.json()["connection"]["id"]
    token = await http.get(
        f"{live_service.url}/v1/connections/{cid}/token", headers=live_service.headers
    )
    schema = resolve(document, "#/components/schemas/TokenOut")
    # `public_token` is the one optional field: present only where the platform issued one.
    assert set(token.json()) == set(schema["properties"]) - {"public_token"}
    assert set(schema["required"]) <= set(token.json())
    TokenOut.model_validate(token.json())
    missing = await http.get(
        f"{live_service.url}/v1/connections/con_missing/token", headers=live_service.headers
    )
    assert missing.status_code == 404
    ErrorResponse.model_validate(missing.json())
