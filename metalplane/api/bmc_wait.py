"""Answering a request that waits for a BMC, within a bounded time and off the API's threads.

A BMC that accepts a connection and never answers must not hold an API thread: the work runs
on a conductor worker (:meth:`Conductor.run_locked`) and the request awaits its future on
the event loop for at most ``settings.api_bmc_wait`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.responses import JSONResponse

from metalplane.common.exceptions import BMCError

__all__ = ["BMC_SLOW", "await_bmc", "retry_after"]

LOG = logging.getLogger(__name__)
T = TypeVar("T")

BMC_SLOW = "The BMC of node {ident} is slow: it did not answer within {wait:g} s " \
           "(api_bmc_wait). The request goes on in the background if it had started; " \
           "try again later."


def retry_after(wait: float) -> str:
    """The ``Retry-After`` value (whole seconds, at least 1) for a BMC given ``wait`` s."""
    return str(max(1, math.ceil(wait)))


async def await_bmc(fut: concurrent.futures.Future[T], ident: str, wait: float,
                    error: Callable[[int, str], JSONResponse]) -> T | JSONResponse:
    """The result of ``fut`` (BMC work on a conductor worker), awaited at most ``wait`` s.

    Past ``wait`` the work is cancelled if it has not started (it may have queued behind
    other work), else left to finish in the background, and the answer is a 503 made by
    ``error(status, message)`` (the API's error shape) with ``Retry-After``. A
    :class:`BMCError` from the work (a failure, a busy BMC) is a 503 with ``Retry-After``
    too. Other errors of ``fut`` are raised as they are: :class:`NodeLocked` (409) and
    :class:`NotFound` (404) answer without ``Retry-After``.
    """
    waiter = asyncio.wrap_future(fut)
    try:
        return await asyncio.wait_for(asyncio.shield(waiter), wait)
    except TimeoutError:
        fut.cancel()
        # nobody awaits it now (a failed boot device change is in last_error)
        waiter.add_done_callback(_consume)
        message = BMC_SLOW.format(ident=ident, wait=wait)
        LOG.warning("request gave up waiting: %s", message)
        resp = error(503, message)
    except BMCError as exc:
        LOG.warning("request failed: %s", exc.message)
        resp = error(exc.code, exc.message)
    resp.headers["Retry-After"] = retry_after(wait)
    return resp


def _consume(waiter: asyncio.Future[Any]) -> None:
    """Take the outcome of work nobody waits for any more (else asyncio logs it as lost)."""
    if not waiter.cancelled():
        waiter.exception()
