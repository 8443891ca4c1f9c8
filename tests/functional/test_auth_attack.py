"""http_basic under attack (issue #17): wrong passwords are limited per client address and
never slow down a client whose credentials were verified, bcrypt runs off the event loop,
and an unknown user name costs the same bcrypt check as a known one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from metalplane.api import auth
from metalplane.api.auth import FailureLimiter, hash_password
from tests.helpers.server import RunningServer, running_server


@pytest.fixture
def basic(tmp_path: Path) -> Iterator[RunningServer]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "htpasswd").write_text(f"ops:{hash_password('correct horse')}\n")
    with running_server(data, auth_strategy="http_basic") as s:
        yield s


def test_wrong_passwords_are_limited_and_the_right_one_stays_fast(basic: RunningServer
                                                                   ) -> None:
    ops = httpx.Client(base_url=basic.url, auth=("ops", "correct horse"), timeout=30)
    evil = httpx.Client(base_url=basic.url, auth=("ops", "guess"), timeout=30)
    try:
        assert ops.get("/v1/nodes").status_code == 200  # verified once, then cached
        codes = [evil.get("/v1/nodes").status_code for _ in range(8)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
        refused = evil.get("/v1/nodes")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "Too many failed authentications" in refused.json()["error_message"]
        for _ in range(5):  # the blocked address's verified client is not slowed down
            assert ops.get("/v1/nodes").status_code == 200
        assert evil.get("/").status_code == 200  # public paths need no credentials
    finally:
        ops.close()
        evil.close()


def test_bcrypt_runs_off_the_event_loop(basic: RunningServer) -> None:
    users = basic.service.users
    assert users is not None
    entered, release = threading.Event(), threading.Event()
    real = users._verify

    def slow(user: str, password: str) -> bool:
        entered.set()
        release.wait(30)
        return real(user, password)

    users._verify = slow  # type: ignore[method-assign]
    result: dict[str, Any] = {}
    pending = threading.Thread(target=lambda: result.update(
        r=httpx.get(f"{basic.url}/v1/nodes", auth=("ops", "correct horse"), timeout=60)))
    pending.start()
    try:
        assert entered.wait(30)
        # the check is under way; the loop still answers others
        assert httpx.get(f"{basic.url}/v1", timeout=5).status_code == 200
        assert "r" not in result
    finally:
        release.set()
        pending.join(60)
    assert result["r"].status_code == 200


def test_an_unknown_user_costs_the_same_bcrypt_check(basic: RunningServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed[:7])
        return real(password, hashed)

    monkeypatch.setattr(auth.bcrypt, "checkpw", counting)
    for user in ("ops", "nobody"):
        r = httpx.get(f"{basic.url}/v1/nodes", auth=(user, f"wrong-{user}"), timeout=30)
        assert r.status_code == 401
    assert len(calls) == 2 and calls[0] == calls[1]  # one check each, the same cost


def test_the_failure_limiter_backs_off_and_forgets() -> None:
    limiter = FailureLimiter(free=3, base=10.0, longest=40.0, capacity=3)
    for _ in range(2):
        limiter.failed("a")
    assert limiter.retry_after("a") == 0.0
    limiter.failed("a")
    assert 9.0 < limiter.retry_after("a") <= 10.0
    limiter.failed("a")
    assert 19.0 < limiter.retry_after("a") <= 20.0
    for _ in range(3):
        limiter.failed("a")
    assert limiter.retry_after("a") <= 40.0  # capped
    limiter.succeeded("a")
    assert limiter.retry_after("a") == 0.0
    for name in ("b", "c", "d", "e"):
        for _ in range(3):
            limiter.failed(name)
    assert limiter.retry_after("b") == 0.0  # the oldest was forgotten (capacity 3)
    assert limiter.retry_after("e") > 0
