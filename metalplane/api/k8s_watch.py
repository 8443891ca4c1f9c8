"""Watches of the Kubernetes-style API (``?watch=true`` on a list), for ``kubectl get -w``
and any client-go informer: a chunked stream of ``{"type": ..., "object": ...}\\n`` lines.

Generic over the kinds of :class:`metalplane.conductor.kube_watch.WatchHub`: the caller
gives the kind, how to list it, how to render one object (and its Table cells) and
whether an object matches the request's selectors. Semantics are kube-apiserver's
(``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go``, the watch cache, and
the API conventions' "Watch" section):

- ``resourceVersion`` empty or ``"0"``: a synthetic ``ADDED`` for each current object,
  then the changes; a number: the changes after it; older than the hub keeps: one
  ``ERROR`` event holding a 410 ``Expired`` Status, and the stream ends;
- ``timeoutSeconds`` bounds the stream (default: kube-apiserver's
  ``--min-request-timeout``, 1800 s, times a random factor in [1, 2));
- a label selector turns a change into ``ADDED``/``DELETED`` when the object starts or
  stops matching;
- ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``: each event's object is a
  one-row ``Table``; only the first carries ``columnDefinitions``;
- ``allowWatchBookmarks=true``: after a quiet :data:`BOOKMARK_INTERVAL` s, a ``BOOKMARK``
  whose object has only ``kind``, ``apiVersion`` and ``metadata.resourceVersion`` (the
  version a client may resume from); not in the Table form (kubectl asks for none).

A watch is an async generator: it holds no executor thread while it waits, and ends when
the client goes, its timeout passes or the hub closes (server stop). Event objects are
never logged (a Secret's data is in them, base64, as Kubernetes sends it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from metalplane.api.app import _BLOCKING
from metalplane.conductor.kube_watch import TooOld, WatchHub
from metalplane.db.kube import KubeChange
from metalplane.db.models import KubeObject

__all__ = ["BOOKMARK_INTERVAL", "MIN_REQUEST_TIMEOUT", "WatchBadRequest", "WatchSpec",
           "is_watch", "watch_response"]

MIN_REQUEST_TIMEOUT = 1800.0  # kube-apiserver's --min-request-timeout default, in seconds
BOOKMARK_INTERVAL = 60.0  # seconds without an event before a BOOKMARK (kube-apiserver: ~1 min)


class WatchBadRequest(ValueError):
    """A watch parameter that does not parse (the API answers 400 with its message)."""


@dataclass(frozen=True)
class WatchSpec:
    """What a watch of one kind needs from the API.

    ``snapshot(namespace)`` (blocking; run on the executor) returns the current objects
    and the ``resourceVersion`` they are at; ``render(obj)`` the object's document;
    ``columns`` and ``cells(obj)`` its Table form (``columns`` as
    ``meta.k8s.io/v1`` ``TableColumnDefinition`` dicts, the cells of one row);
    ``row_object(obj)`` the row's ``object`` (``PartialObjectMetadata``); ``matches(obj,
    labels)`` whether an object with those labels passes the request's selectors;
    ``api_version`` the kind's (``metal3.io/v1alpha1``), for bookmarks."""

    kind: str
    api_version: str
    snapshot: Callable[[str | None], tuple[list[KubeObject], int]]
    render: Callable[[KubeObject], dict[str, Any]]
    columns: list[dict[str, Any]]
    cells: Callable[[KubeObject], list[Any]]
    row_object: Callable[[KubeObject], dict[str, Any]]
    matches: Callable[[KubeObject, dict[str, Any]], bool]


def is_watch(request: Request) -> bool:
    """Whether a list request asks for a watch (``watch=true`` or ``watch=1``)."""
    return request.query_params.get("watch", "").lower() in ("true", "1")


def _timeout(request: Request) -> float:
    raw = request.query_params.get("timeoutSeconds")
    if raw in (None, ""):
        return MIN_REQUEST_TIMEOUT * (1 + random.random())  # spreads reconnections
    try:
        value = int(raw)
    except ValueError:
        raise WatchBadRequest(f"timeoutSeconds: Invalid value: {raw!r}: must be an "
                              "integer number of seconds") from None
    if value < 0:
        raise WatchBadRequest(f"timeoutSeconds: Invalid value: {value}: must be >= 0")
    return float(value) if value else MIN_REQUEST_TIMEOUT * (1 + random.random())


def _since(request: Request) -> int | None:
    raw = request.query_params.get("resourceVersion", "")
    if raw in ("", "0"):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise WatchBadRequest(f"resourceVersion: Invalid value: {raw!r}: must be the "
                              "resourceVersion of a list or an object") from None
    if value < 0:
        raise WatchBadRequest(f"resourceVersion: Invalid value: {value}")
    return value


def _expired(message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Expired", "code": 410}


def watch_response(request: Request, hub: WatchHub, spec: WatchSpec,
                   namespace: str | None) -> StreamingResponse:
    """The watch of ``spec.kind`` in ``namespace`` (None: all) that ``request`` asks for,
    as a chunked ``application/json`` stream. Raises :class:`WatchBadRequest` for a bad
    ``timeoutSeconds`` or ``resourceVersion``."""
    timeout, since = _timeout(request), _since(request)
    table = "as=Table" in request.headers.get("accept", "")
    bookmarks = (request.query_params.get("allowWatchBookmarks", "").lower() in ("true", "1")
                 and not table)
    stream = _events(hub, spec, namespace, since, time.monotonic() + timeout, table,
                     bookmarks)
    return StreamingResponse(stream, media_type="application/json",
                             headers={"Cache-Control": "no-cache, private"})


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()


def _transition(change: KubeChange, spec: WatchSpec, namespace: str | None) -> str | None:
    """The event type ``change`` is for this watch (None: not its business)."""
    obj = change.obj
    if namespace is not None and obj.namespace != namespace:
        return None
    now = spec.matches(obj, obj.labels or {})
    if change.type != "MODIFIED" or change.prev_labels is None:
        return change.type if now else None
    before = spec.matches(obj, change.prev_labels)
    if before and now:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


async def _events(hub: WatchHub, spec: WatchSpec, namespace: str | None, since: int | None,
                  deadline: float, table: bool, bookmarks: bool) -> AsyncIterator[bytes]:
    first = True
    quiet_since = time.monotonic()

    def doc(obj: KubeObject) -> dict[str, Any]:
        nonlocal first
        if not table:
            return spec.render(obj)
        out = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
               "metadata": {"resourceVersion": str(obj.resource_version)},
               "columnDefinitions": spec.columns if first else [],
               "rows": [{"cells": spec.cells(obj), "object": spec.row_object(obj)}]}
        first = False
        return out

    watcher = hub.subscribe()
    try:
        if since is None:  # the current objects first, as ADDED, then what follows them
            objs, cursor = await asyncio.get_running_loop().run_in_executor(
                _BLOCKING, functools.partial(spec.snapshot, namespace))
            for n, obj in enumerate(objs):
                if spec.matches(obj, obj.labels or {}):
                    yield _line("ADDED", doc(obj))
                if n % 200 == 199:
                    await asyncio.sleep(0)  # let other requests in between
        else:
            cursor = since
        while True:
            seen = hub.revision  # every change of the kind up to it is in what follows
            try:
                changes = hub.changes_after(spec.kind, cursor)
            except TooOld as exc:
                yield _line("ERROR", _expired(str(exc)))
                return
            for n, change in enumerate(changes):
                cursor = change.obj.resource_version
                kind = _transition(change, spec, namespace)
                if kind is not None:
                    yield _line(kind, doc(change.obj))
                    quiet_since = time.monotonic()
                if n % 200 == 199:
                    await asyncio.sleep(0)
            now = time.monotonic()
            if bookmarks and now - quiet_since >= BOOKMARK_INTERVAL:
                cursor = max(cursor, seen)
                yield _line("BOOKMARK", {"kind": spec.kind, "apiVersion": spec.api_version,
                                         "metadata": {"resourceVersion": str(cursor)}})
                quiet_since = now
            left = deadline - now
            if hub.closed or left <= 0:
                return
            await watcher.wait(min(left, BOOKMARK_INTERVAL) if bookmarks else left)
    finally:
        hub.unsubscribe(watcher)
