"""The agent's heartbeat loop against an API double (httpx.MockTransport): how long it waits
before the next beat. The functional tests in tests/functional/test_agent.py run the agent
against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from metalplane.agent.main import Agent


def ironic_error(message: str) -> dict[str, str]:
    """The API's error body (Ironic's shape)."""
    return {"error_message": json.dumps({"faultstring": message, "faultcode": "Client",
                                         "debuginfo": None})}


def run_against(tmp_path: Path, answers: list[httpx.Response]) -> tuple[int, list[float]]:
    """Run the agent's loop on ``answers`` (one a heartbeat); the waits between beats."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/lookup":
            return httpx.Response(200, json={"node": {"uuid": "n-1"},
                                             "config": {"heartbeat_interval": 10}})
        return answers.pop(0)

    agent = Agent("http://api.invalid", "token", str(tmp_path / "disk"), tmp_path / "work",
                  lldp_wait=0, max_runtime=60)
    agent.http = httpx.Client(transport=httpx.MockTransport(handler))
    waits: list[float] = []

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout if timeout is not None else -1.0)
        return False

    agent._finished.wait = wait  # type: ignore[method-assign]
    return agent.run(), waits


def test_a_beat_refused_because_the_node_is_locked_is_tried_again_soon(
        tmp_path: Path) -> None:
    code, waits = run_against(tmp_path, [
        httpx.Response(409, headers={"Retry-After": "1"}, json=ironic_error("busy")),
        httpx.Response(200, json={"command": None, "heartbeat_interval": 10}),
        httpx.Response(404, json={"error": "node n-1 is not waiting for an agent"}),
    ])
    assert code == 0  # the 404: the node no longer needs it
    assert waits == [1.0, 10.0]  # soon after "locked", the interval after a plain beat


def test_a_conflict_without_the_retry_mark_ends_the_agent(tmp_path: Path) -> None:
    """The word "locked" in a message does not make a 409 retryable; only the API's
    Retry-After mark does."""
    code, waits = run_against(tmp_path, [
        httpx.Response(409, json=ironic_error("node n-1 is locked out: it is active; it "
                                              "expects no agent now")),
    ])
    assert code == 0  # stopped at once: the node no longer expects it
    assert waits == []


def test_the_issued_token_is_kept_for_a_restarted_agent(tmp_path: Path) -> None:
    """The first lookup of a boot is issued the token, a later one gets "******": an agent
    restarted within the boot (the ramdisk's init) takes the token its first run kept."""
    issued = ["tok-1"]
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Agent-Token"))
        if request.url.path == "/v1/lookup":
            token = issued.pop(0) if issued else "******"
            return httpx.Response(200, json={"node": {"uuid": "n-1"},
                                             "config": {"agent_token": token}})
        return httpx.Response(404, json={"error": "not waiting"})

    token_file = tmp_path / "run" / "agent-token"
    for _ in range(2):  # the first run, then the restarted one
        agent = Agent("http://api.invalid", None, str(tmp_path / "disk"), tmp_path / "work",
                      lldp_wait=0, max_runtime=60, token_file=token_file)
        agent.http = httpx.Client(transport=httpx.MockTransport(handler),
                                  headers=dict(agent.http.headers))
        assert agent.run() == 0
        assert agent.token == "tok-1"
    assert token_file.read_text() == "tok-1"
    assert token_file.stat().st_mode & 0o777 == 0o600
    # the restarted agent's lookup and beat carry the kept token
    assert seen == [None, "tok-1", "tok-1", "tok-1"]
