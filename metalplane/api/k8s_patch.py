"""The patch types of the Kubernetes-style API: JSON merge patch (RFC 7386), JSON patch
(RFC 6902) and Kubernetes' strategic merge patch, each applied to an object as a dict.

Strategic merge patch (``application/strategic-merge-patch+json``) merges like a merge
patch, except where the object's schema says otherwise: a list whose schema carries
``x-kubernetes-patch-strategy: merge`` is merged (by ``x-kubernetes-patch-merge-key`` for
lists of objects, as a set for lists of scalars) instead of replaced, and the patch may
carry directives: ``$patch: replace|delete`` in an object (and ``delete``/``replace`` in a
merged list's element), ``$retainKeys``, ``$setElementOrder/<list>`` and
``$deleteFromPrimitiveList/<list>``. Semantics follow k8s.io/apimachinery
``pkg/util/strategicpatch`` (what kube-apiserver runs) and the design notes
``community/contributors/devel/sig-api-machinery/strategic-merge-patch.md``; where
apimachinery answers 500 for a malformed patch, this answers 400.

Pure functions, no I/O; which patch type a kind accepts is the API's business.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonpatch

__all__ = ["PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]

Resolve = Callable[[dict[str, Any] | None], dict[str, Any]]
_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


class PatchError(Exception):
    """A patch that does not parse or apply: ``code`` 400 (malformed) or 422 (well-formed
    but not applicable), ``message`` as kube-apiserver words it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch of ``target`` by ``patch`` (``null`` deletes a key; a
    non-object patch replaces). Returns a new value; neither argument is changed."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(doc: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch: ``ops`` (a list of ``{"op", "path", ...}``) applied to ``doc``.
    Raises :class:`PatchError` 400 when ``ops`` is not a list of operations, 422 when an
    operation does not apply (a missing path, a failed ``test``)."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise PatchError(400, "the JSON patch must be a list of operations "
                         '([{"op": ..., "path": ...}, ...])')
    out: Any = doc
    for op in ops:  # one at a time, to name the one that fails (never the document: a
        # Secret's data must not come back in an error)
        what = f"jsonpatch {op.get('op')} operation"
        try:
            out = jsonpatch.JsonPatch([op]).apply(out)
        except jsonpatch.InvalidJsonPatch as exc:
            raise PatchError(400, f"invalid JSON patch: {what} on {op.get('path')!r}: "
                             f"{str(exc).split(':')[0]}") from None
        except jsonpatch.JsonPatchTestFailed:
            raise PatchError(422, f"{what} failed: the value at {op.get('path')!r} differs"
                             ) from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
                KeyError, IndexError):
            raise PatchError(422, f"{what} does not apply: doc is missing path: "
                             f"{op.get('path')!r}") from None
    if not isinstance(out, dict):
        raise PatchError(422, "the JSON patch must leave an object")
    return dict(out)


def strategic_merge_patch(original: dict[str, Any], patch: Any, schema: dict[str, Any],
                          resolve: Resolve) -> dict[str, Any]:
    """``original`` patched by the strategic merge patch ``patch``, where ``schema`` is the
    object's OpenAPI schema and ``resolve`` follows a ``$ref`` in it (and maps None to
    ``{}``). Returns a new dict. Raises :class:`PatchError`: 400 for a malformed patch (not
    an object, a bad directive, a merged list element without its merge key), 422 for a
    list of lists."""
    if not isinstance(patch, dict):
        raise PatchError(400, "the strategic merge patch must be a JSON object")
    result = _merge_map(copy.deepcopy(original), copy.deepcopy(patch), schema, resolve)
    return result


# ---------------------------------------------------------------- the merge
def _meta(prop: dict[str, Any] | None, resolve: Resolve) -> tuple[set[str], str]:
    """``(strategies, merge key)`` of a field from its schema (the property itself, then
    what its ``$ref`` names)."""
    strategies: set[str] = set()
    key = ""
    for schema in (prop or {}, resolve(prop)):
        raw = schema.get("x-kubernetes-patch-strategy")
        if raw:
            strategies |= {s.strip() for s in str(raw).split(",")}
        key = key or str(schema.get("x-kubernetes-patch-merge-key") or "")
    return strategies, key


def _field(schema: dict[str, Any], key: str, resolve: Resolve) -> dict[str, Any] | None:
    schema = resolve(schema)
    props = schema.get("properties") or {}
    if key in props:
        return dict(props[key])
    extra = schema.get("additionalProperties")
    return dict(extra) if isinstance(extra, dict) else None


def _items(prop: dict[str, Any] | None, resolve: Resolve) -> dict[str, Any]:
    items = resolve(prop).get("items")
    return dict(items) if isinstance(items, dict) else {}


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _bad_directive(directive: Any) -> PatchError:
    # (apimachinery also prints the map; values are not echoed here: they may be secret)
    return PatchError(400, f"unknown patch type: {directive!r}")


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: dict[str, Any],
               resolve: Resolve) -> dict[str, Any]:
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == "replace":  # this object becomes the patch (its directives applied)
            return _merge_map({}, patch, schema, resolve)
        if directive == "delete":
            return {}
        raise _bad_directive(directive)

    if _RETAIN in patch:
        retain = patch.pop(_RETAIN)
        if not isinstance(retain, list):
            raise PatchError(400, "invalid patch format of retainKeys")
        for key, value in patch.items():
            if value is not None and not key.startswith((_ORDER, _DELETE_FROM)) \
                    and key not in retain:
                raise PatchError(400, "invalid patch format of retainKeys: "
                                 f'"{key}" is patched but not in $retainKeys')
        original = {k: v for k, v in original.items() if k in retain}

    for order_key in [k for k in patch if k.startswith(_ORDER)]:
        order = patch.pop(order_key)
        if not isinstance(order, list):
            raise PatchError(400, "invalid patch format of setElementOrder list")
        name = order_key[len(_ORDER):]
        prop = _field(schema, name, resolve)
        strategies, merge_key = _meta(prop, resolve)
        current, listed = original.get(name), patch.pop(name, None)
        if current is None and listed is None:
            continue
        for value in (current, listed):
            if value is not None and not isinstance(value, list):
                raise PatchError(400, f"{name}: $setElementOrder names a field that is not "
                                 "a list")
        if current is not None and listed is not None:
            merged = (_merge_list(current, listed, _items(prop, resolve), merge_key, resolve)
                      if "merge" in strategies else listed)
        else:
            merged = current if listed is None else \
                _merge_list([], listed, _items(prop, resolve), merge_key, resolve)
        original[name] = _ordered(merged, order, current or [], merge_key)

    for delete_key in [k for k in patch if k.startswith(_DELETE_FROM)]:
        values = patch.pop(delete_key)
        if not isinstance(values, list):
            raise PatchError(400, "invalid patch format of primitive list")
        name = delete_key[len(_DELETE_FROM):]
        if isinstance(original.get(name), list):
            original[name] = [v for v in original[name] if v not in values]

    for key, value in patch.items():
        if value is None:
            original.pop(key, None)
            continue
        prop = _field(schema, key, resolve)
        current = original.get(key)
        strategies, merge_key = _meta(prop, resolve)
        if isinstance(value, dict):
            if isinstance(current, dict) and "replace" not in strategies:
                original[key] = _merge_map(current, value, prop or {}, resolve)
            else:
                original[key] = _merge_map({}, value, prop or {}, resolve)
        elif isinstance(value, list):
            if isinstance(current, list) and "merge" in strategies:
                original[key] = _merge_list(current, value, _items(prop, resolve),
                                            merge_key, resolve)
            elif "merge" in strategies:  # the directives of a new list still apply
                original[key] = _merge_list([], value, _items(prop, resolve), merge_key,
                                            resolve)
            else:
                original[key] = value
        else:
            original[key] = value
    return original


def _merge_list(original: list[Any], patch: list[Any], item: dict[str, Any], merge_key: str,
                resolve: Resolve) -> list[Any]:
    """A list with ``x-kubernetes-patch-strategy: merge``: scalars as a set, objects by
    ``merge_key`` (``{"$patch": "delete", KEY: v}`` removes, ``{"$patch": "replace"}``
    makes the list the patch's other elements)."""
    if not original and not patch:
        return original
    kinds = {_kind(v) for v in [*original, *patch]}
    if "list" in kinds:
        raise PatchError(422, "lists of lists are not supported")
    if len(kinds) > 1:
        raise PatchError(400, "list element types are not identical")
    if kinds == {"scalar"}:
        merged: list[Any] = []
        for value in [*original, *patch]:
            if value not in merged:
                merged.append(value)
        return _ordered(merged, patch, original, "")
    if not merge_key:
        raise PatchError(400, "cannot merge lists without merge key")
    current = list(original)
    rest: list[dict[str, Any]] = []
    replace = False
    for element in patch:
        directive = element.get(_DIRECTIVE)
        if directive is None:
            if merge_key not in element:
                raise PatchError(400, f"map with keys {sorted(element)} does not contain "
                                 f"declared merge key: {merge_key}")
            rest.append(element)
        elif directive == "delete":
            if merge_key not in element:
                raise PatchError(400, f"map with keys {sorted(element)} does not contain "
                                 f"declared merge key: {merge_key}")
            current = [c for c in current if c.get(merge_key) != element[merge_key]]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError(400, "merging lists cannot yet be specified in the patch")
        else:
            raise _bad_directive(directive)
    if replace:
        return [_merge_map({}, e, item, resolve) for e in rest]
    for element in rest:
        for i, existing in enumerate(current):
            if existing.get(merge_key) == element[merge_key]:
                current[i] = _merge_map(existing, element, item, resolve)
                break
        else:
            current.append(_merge_map({}, element, item, resolve))
    return _ordered(current, rest, original, merge_key)


def _ordered(merged: list[Any], order: list[Any], server: list[Any], merge_key: str
             ) -> list[Any]:
    """``merged`` in apimachinery's order: the elements named in ``order`` (a patch list or
    a ``$setElementOrder`` list) in that order, the others (server-only) in their order in
    ``server``, interleaved where both are found in ``server``."""
    def ident(v: Any) -> Any:
        return v.get(merge_key) if merge_key and isinstance(v, dict) else v

    def index(items: list[Any], v: Any) -> int:
        wanted = ident(v)
        for i, item in enumerate(items):
            if ident(item) == wanted:
                return i
        return -1

    named = [v for v in merged if index(order, v) >= 0]
    others = [v for v in merged if index(order, v) < 0]
    named.sort(key=lambda v: index(order, v))
    others.sort(key=lambda v: (index(server, v) < 0, index(server, v)))
    out: list[Any] = []
    i = j = 0
    while i < len(others) or j < len(named):
        if j >= len(named):
            out.append(others[i])
            i += 1
        elif i >= len(others):
            out.append(named[j])
            j += 1
        else:
            left, right = index(server, others[i]), index(server, named[j])
            if left >= 0 and right >= 0 and left < right:
                out.append(others[i])
                i += 1
            else:
                out.append(named[j])
                j += 1
    return out
