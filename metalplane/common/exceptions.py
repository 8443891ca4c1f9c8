"""The exception tree of metalplane.

Every error that can reach a user derives from :class:`MetalplaneError` and carries the HTTP
status the API answers with, so the API layer maps errors without knowing the business rules.
``retryable`` says whether trying the same call again may succeed (a BMC timeout may; a bad
MAC never will).
"""

from __future__ import annotations

__all__ = [
    "BMCError",
    "Conflict",
    "DriverNotFound",
    "Forbidden",
    "Invalid",
    "InvalidState",
    "InvalidStateRequested",
    "MetalplaneError",
    "NodeLocked",
    "NotAuthorized",
    "NotFound",
]


class MetalplaneError(Exception):
    """Base of all metalplane errors. ``code`` is the HTTP status the API answers with."""

    code: int = 500
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(MetalplaneError):
    """Bad input: a malformed field, an unknown field, a missing required value (HTTP 400)."""

    code = 400


class NotAuthorized(MetalplaneError):
    """Missing or wrong credentials (HTTP 401)."""

    code = 401


class Forbidden(MetalplaneError):
    """The caller is known but may not do this: a policy rule or a project boundary
    forbids it (HTTP 403)."""

    code = 403


class NotFound(MetalplaneError):
    """The named resource does not exist (HTTP 404)."""

    code = 404


class Conflict(MetalplaneError):
    """The request clashes with existing state: a duplicate MAC or name (HTTP 409)."""

    code = 409


class InvalidStateRequested(Invalid):
    """The verb is not allowed in the node's current provision or power state (HTTP 400, as
    Ironic's ``InvalidStateRequested``: the clients read a 409 as "locked, retry")."""


class InvalidState(Conflict):
    """The resource's state forbids the change, e.g. removing an active node's allocation
    (HTTP 409, as Ironic's ``InvalidState``)."""


class NodeLocked(Conflict):
    """Another operation holds the node's lock (HTTP 409). Retryable: the lock is released."""

    retryable = True


class DriverNotFound(Invalid):
    """An unknown hardware type or interface implementation was named (HTTP 400)."""


class BMCError(MetalplaneError):
    """The BMC refused a request or could not be reached, after retries (HTTP 503 if direct)."""

    code = 503
    retryable = True
