"""The CLI's and demo's client sends a request again while the node is locked (409) or the
service unavailable (503), as python-ironicclient does; other errors come back at once."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from metalplane.client import http as client_http
from metalplane.client.http import ApiError, Client


def _error(status: int, text: str) -> httpx.Response:
    return httpx.Response(status, json={"error_message": json.dumps(
        {"faultstring": text, "faultcode": "Client", "debuginfo": None})})


def _client(answers: list[httpx.Response]) -> tuple[Client, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers.pop(0)

    client = Client("http://api.invalid")
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(handler))
    client.retry_interval = 0
    return client, seen


LOCKED: Callable[[], httpx.Response] = lambda: _error(  # noqa: E731
    409, "Node n-1 is locked by host c1 for power state change to 'power on'; please retry "
    "after it finishes.")


def test_a_locked_node_is_retried_until_the_lock_is_gone() -> None:
    client, seen = _client([LOCKED(), LOCKED(), httpx.Response(201, json={"ok": 1})])
    assert client.post("/v1/nodes/n-1/vifs", {"id": "p"}) == {"ok": 1}
    assert len(seen) == 3


def test_retries_are_bounded() -> None:
    answers = [LOCKED() for _ in range(client_http.MAX_RETRIES + 2)]
    client, seen = _client(answers)
    with pytest.raises(ApiError, match="is locked by host c1") as exc:
        client.post("/v1/nodes/n-1/vifs", {"id": "p"})
    assert exc.value.status == 409 and len(seen) == client_http.MAX_RETRIES + 1


def test_other_conflicts_and_errors_are_not_retried() -> None:
    for answer in (_error(409, "A node with name n-1 already exists."),
                   _error(400, "Invalid input for field/attribute name.")):
        client, seen = _client([answer])
        with pytest.raises(ApiError):
            client.post("/v1/nodes", {"name": "n-1"})
        assert len(seen) == 1


def test_service_unavailable_is_retried() -> None:
    client, seen = _client([httpx.Response(503, text="busy"), httpx.Response(200, json=[])])
    assert client.get("/v1/nodes") == []
    assert len(seen) == 2
