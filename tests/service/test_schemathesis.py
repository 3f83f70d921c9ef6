"""Schemathesis over every operation of the live `/openapi.json`, with a valid admin key, on both
databases: no request it makes gets a server error or an answer the document does not describe.

The run is schemathesis' own CLI in a subprocess, against the service that the `live_service`
fixture serves over a socket: its phases (coverage, fuzzing, stateful), its de-duplication of
failures and its `curl` reproductions, with the client on a core of its own. It is bounded: one
worker (so one order of requests), deterministic generation, a few examples per operation, no
example database, no cache, a hard timeout.

Before it runs, the test connects two stores and imports a third, and gives schemathesis their
ids and end user as dictionaries, so `{connection_id}` and `end_user_id` hit real rows part of the
time. Every other string the document accepts sometimes gets a value from HOSTILE instead of a
generated one. Within each phase schemathesis runs DELETE after the operations that read a
connection, so the seeded rows serve all of them; with one worker the order, and so the outcome,
is the same from run to run.

On failure the test prints schemathesis' report: for each operation and kind of failure one
example (operation, status, body, `curl` line). Server errors with the same answer are one
failure to it, so fixing one may reveal the next.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from shopkeys.sandbox.browser import press
from tests.conftest import LiveService

#: Fuzzing examples per operation (the coverage phase adds its own fixed set of boundary cases).
MAX_EXAMPLES = 10
#: A hard stop for a hung run; a normal one takes a fraction of it.
RUN_TIMEOUT = 240

#: What every answer must satisfy. Left out: `positive_data_acceptance` and
#: `negative_data_rejection` (the API has rules no schema states: allowed `return_to` origins,
#: Ecwid's account id, a PATCH's expected end user; and pydantic takes a number for a date-time),
#: `use_after_free` (a deleted connection's events stay readable: they are its history) and
#: `allow_header_conformance` (Starlette's 405 names only the first route that matches a path).
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "ensure_resource_availability",
]

END_USER = "merchant-schemathesis"

#: Values that have broken the service before, by the kind of string they go into: NUL bytes,
#: control characters, non-ASCII text, values longer than their database columns; naive and
#: out-of-range date-times. Only characters TOML can carry (no lone surrogates: fuzzing generates
#: those anyway), and no malformed URL such as `http://[::1`: schemathesis 4.32 itself crashes on
#: one that comes back in an answer.
HOSTILE = {
    "text": ["", "\x00", "con_\x00", "\x01", "é", "токен", "x" * 41, "x" * 129, "x" * 256],
    "time": [
        "2030-01-01T00:00:00",
        "0042-01-01",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "\x00",
    ],
}
#: How often a string gets a HOSTILE value (seeded ids and end users: a dictionary value half
#: the time, two thirds of them real).
HOSTILE_PROBABILITY = 0.15


async def seed(live: LiveService, http: httpx2.AsyncClient) -> dict[str, list[str]]:
    """Two stores connected through the sandbox (SHOPLINE refreshes, Ecwid does not) and an
    unclaimed import (it can be claimed). Returns their ids and end user."""

    async def api(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = await http.request(method, f"{live.url}{path}", headers=live.headers, **kwargs)
        assert answer.status_code in (200, 201), f"{method} {path}: {answer.text}"
        body: dict[str, Any] = answer.json()
        return body

    for provider in ("shopline", "ecwid"):
        body = {"provider": provider, "end_user_id": END_USER}
        session = await api("POST", "/v1/connect-sessions", json=body)
        done = await http.get(await press(http, session["url"]))
        assert done.status_code == 200, done.text
    body = {"provider": "aliexpress", "access_token": "50000seeded", "account_id": "seed-ae"}
    await api("POST", "/v1/connections/import", json=body)
    page = await api("GET", "/v1/connections")
    ids = [connection["id"] for connection in page["data"]]
    assert len(ids) == 3, page
    return {"path.connection_id": ids, "query.end_user_id": [END_USER]}


def kind_of(schema: dict[str, Any]) -> str | None:
    """`time` for a date-time, `text` for any other free string (not an enum), maybe nullable."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string" and "enum" not in option:
            return "time" if option.get("format") == "date-time" else "text"
    return None


def string_fields(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Schemathesis' binding key (`query.after`, `body.scopes[*]`...) and the kind of every free
    string that an operation takes as a parameter or in its JSON body."""
    schemas = document.get("components", {}).get("schemas", {})
    for item in document["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if kind := kind_of(parameter.get("schema", {})):
                    yield f"{parameter['in']}.{parameter['name']}", kind
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema", {})
            if "$ref" in body:
                body = schemas[body["$ref"].rsplit("/", 1)[-1]]
            for name, field in body.get("properties", {}).items():
                if kind := kind_of(field):
                    yield f"body.{name}", kind
                elif field.get("type") == "array" and (kind := kind_of(field.get("items", {}))):
                    yield f"body.{name}[*]", kind


def toml(value: Any) -> str:
    """A TOML value: JSON's escapes are TOML's, for strings without lone surrogates."""
    return json.dumps(value)


def config_file(
    path: Path, live: LiveService, document: dict[str, Any], known: dict[str, list[str]]
) -> Path:
    """What the CLI has no flag for. `Connection: close` keeps every request on a fresh
    connection: the test server's sockets have Nagle's algorithm on, so on a reused connection
    each answer whose body is a second write waits for the client's delayed ACK (about 40 ms a
    request, which would double the run's time)."""
    lines = [
        "color = false",
        'suppress-health-check = ["all"]',
        "[headers]",
        f"Authorization = {toml('Bearer ' + live.api_key)}",
        'Connection = "close"',
        "[cache]",
        "enabled = false",
        "[output.sanitization]",
        "enabled = false",
        "[generation]",
        'database = "none"',
        "[parameters]",
    ]
    dictionaries = {f"hostile_{kind}": values for kind, values in HOSTILE.items()}
    for key, kind in sorted(set(string_fields(document))):
        if key in known:
            # Real values most of the time, hostile ones now and then.
            name, probability = f"known_{len(dictionaries)}", 0.5
            weight = -(-2 * len(HOSTILE[kind]) // len(known[key]))
            dictionaries[name] = known[key] * weight + HOSTILE[kind]
        else:
            name, probability = f"hostile_{kind}", HOSTILE_PROBABILITY
        binding = f"{{ dictionary = {toml(name)}, probability = {probability} }}"
        lines.append(f"{toml(key)} = {binding}")
    for name, entries in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {toml(entries)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def failures_of(output: str) -> str:
    """The CLI's report from its FAILURES section on (each failure with its operation, the
    answer's status and body, and a `curl` line to reproduce it)."""
    start = output.find("=== FAILURES ===")
    return output[output.rfind("\n", 0, start) + 1 :] if start >= 0 else output


async def test_no_server_errors(
    live_service: LiveService, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    known = await seed(live_service, http)
    document = (await http.get(f"{live_service.url}/openapi.json")).json()
    config = config_file(tmp_path / "schemathesis.toml", live_service, document, known)
    report = tmp_path / "report.json"
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config)),
        *("run", f"{live_service.url}/openapi.json"),
        # The proxy answers with whatever the platform does (a sandbox 405 or 500 included);
        # its own refusals are tested in tests/proxy.
        *("--exclude-path-regex", "^/v1/proxy/"),
        *("--checks", ",".join(CHECKS)),
        *("--max-examples", str(MAX_EXAMPLES), "--generation-deterministic"),
        *("--workers", "1", "--request-timeout", "10", "--continue-on-failure"),
        *("--report", "json", "--report-json-path", str(report)),
    ]
    started = time.monotonic()
    try:
        # In a thread, so that this test's event loop stays free while the CLI runs.
        ran = await asyncio.to_thread(
            subprocess.run,
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as hung:
        # What it printed so far comes as bytes, whatever `text` says.
        printed = [
            part if isinstance(part, str) else part.decode(errors="replace")
            for part in (hung.stdout, hung.stderr)
            if part
        ]
        pytest.fail(f"schemathesis ran over {RUN_TIMEOUT}s:\n" + "\n".join(printed), pytrace=False)
    output = ran.stdout + ran.stderr
    print(f"schemathesis ran in {time.monotonic() - started:.1f}s\n{output}")
    if not report.exists():
        message = f"schemathesis wrote no report (exit {ran.returncode}):\n{output}"
        pytest.fail(message, pytrace=False)
    summary = json.loads(report.read_text())
    operations = summary["operations"]
    # Every operation but the proxy's six was tested.
    assert operations["tested"] == operations["selected"] == operations["total"] - 6 > 0, operations
    if summary["failures"] or summary["errors"]:
        found = summary["test_cases"]["unique_failures"]
        message = f"schemathesis found {found} distinct failures:\n{failures_of(output)}"
        pytest.fail(message, pytrace=False)
    assert ran.returncode == 0, output
