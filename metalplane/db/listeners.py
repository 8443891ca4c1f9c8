"""Per-database change hooks: code above the store (the Kubernetes view's event hub and
status writer) learns that rows changed without the writers knowing who listens.

A listener is a plain callable registered on one :class:`~metalplane.db.engine.Database`
for one topic (``"nodes"``: a node row changed, with its ``id`` and the values
written; ``"kube_objects"``: one :class:`metalplane.db.kube.KubeChange`). :func:`notify`
runs after the change committed, in the writer's thread: a listener must be quick (set
an event, append to a list) and must not write to the store. This module must not know
any topic's meaning.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["listen", "notify"]

LOG = logging.getLogger(__name__)

_LOCK = threading.Lock()
# Database -> topic -> listeners; weak, so a disposed Database takes its hooks with it
_HOOKS: weakref.WeakKeyDictionary[Any, dict[str, tuple[Callable[..., None], ...]]] = \
    weakref.WeakKeyDictionary()


def listen(db: Any, topic: str, fn: Callable[..., None]) -> Callable[[], None]:
    """Call ``fn(*args)`` after each change ``notify(db, topic, *args)`` reports. Returns a
    function that removes the hook."""
    with _LOCK:
        topics = _HOOKS.setdefault(db, {})
        topics[topic] = (*topics.get(topic, ()), fn)

    def remove() -> None:
        with _LOCK:
            now = _HOOKS.get(db, {})
            now[topic] = tuple(f for f in now.get(topic, ()) if f is not fn)
    return remove


def notify(db: Any, topic: str, *args: Any) -> None:
    """Run ``topic``'s listeners on ``db`` (none: one dictionary lookup). A listener that
    raises is logged and the others still run."""
    topics = _HOOKS.get(db)
    if not topics:
        return
    for fn in topics.get(topic, ()):
        try:
            fn(*args)
        except Exception:
            LOG.exception("listener %r on %s failed", fn, topic)
