"""A small client of metalplane's Bare Metal API (httpx), for the CLI and the lab's demo.

Errors come back as :class:`ApiError` with the server's one-line message, decoded from
Ironic's ``{"error_message": "<json>"}`` shape. A request refused because the node is
locked by another operation (409 "... is locked by host ...") or because the service is
unavailable (503) is sent again, as python-ironicclient does: up to :data:`MAX_RETRIES`
more times, :data:`RETRY_INTERVAL` s apart.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

__all__ = ["MAX_RETRIES", "RETRY_INTERVAL", "ApiError", "Client"]

MAX_RETRIES = 5  # python-ironicclient's DEFAULT_MAX_RETRIES
RETRY_INTERVAL = 2.0  # seconds, its DEFAULT_RETRY_INTERVAL


class ApiError(Exception):
    """The API refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def decode_error(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body.get("NeutronError"), dict):
            return str(body["NeutronError"].get("message") or body)
        msg = body.get("error_message", body)
        if isinstance(msg, str):
            try:
                inner = json.loads(msg)
                msg = inner.get("faultstring", msg) if isinstance(inner, dict) else msg
            except ValueError:
                pass
        return str(msg)
    except ValueError:
        return resp.text.strip() or resp.reason_phrase


class Client:
    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.retry_interval = RETRY_INTERVAL
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout,
                                  headers={"X-OpenStack-Ironic-API-Version": "latest"})

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; its JSON answer (None for none). Raises :class:`ApiError`
        (after the retries above for a locked node or 503)."""
        for attempt in range(MAX_RETRIES + 1):
            try:
                resp = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise ApiError(f"cannot reach metalplane at {self.url}: {exc} (is "
                               "`metalplane server` running? set --url or METALPLANE_URL)") \
                    from None
            if resp.status_code < 400:
                break
            message = decode_error(resp)
            retryable = resp.status_code == 503 or (resp.status_code == 409
                                                    and " is locked by " in message)
            if not retryable or attempt == MAX_RETRIES:
                raise ApiError(message, resp.status_code)
            time.sleep(self.retry_interval)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items()
                                                 if v is not None})

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def list_all(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Follow ``next`` links to collect a whole list (bounded by the server's pages)."""
        out: list[dict[str, Any]] = []
        marker = None
        for _ in range(10_000):
            page = self.get(path, marker=marker, **params)
            out.extend(page[key])
            if not page.get("next") or not page[key]:
                return out
            marker = page[key][-1]["uuid"]
        return out
