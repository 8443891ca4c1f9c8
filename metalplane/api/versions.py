"""The Bare Metal API's microversion range, and where a request's resolved version is kept.

Source: Bare Metal API reference, "API versions" (``X-OpenStack-Ironic-API-Version`` and
``OpenStack-API-Version: baremetal X.Y``).
"""

from __future__ import annotations

__all__ = ["API_VERSION_STATE", "MAX_VERSION", "MIN_VERSION"]

MIN_VERSION = (1, 1)
MAX_VERSION = (1, 96)  # 1.96: inspection rules
# The request's microversion as the middleware resolved it (either header, or the maximum),
# kept in ``request.state`` for the routes whose answer depends on it.
API_VERSION_STATE = "ironic_api_version"
