from __future__ import annotations

import httpx2
import pytest

import tests.service.test_connect_flow as flow
from tests.conftest import LiveService
from tests.pages.operator import OperatorClient


@pytest.fixture
async def operator(live_service: LiveService, http: httpx2.AsyncClient) -> OperatorClient:
    """An operator signed in with the live service's admin key."""
    client = OperatorClient(http, live_service.url)
    signed = await client.sign_in(live_service.api_key)
    assert signed.status_code == 303, signed.text
    return client


db_vault = flow.db_vault
driver = flow.driver
