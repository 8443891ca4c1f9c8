"""Pydantic building blocks both APIs (Bare Metal v1, Networking v2.0) read bodies with.

* :data:`StrictishBool` -- a bool as Ironic and Neutron read one: JSON true/false, 0/1,
  or one of oslo.utils' strings (``'yes'``, ``'off'``, ...); anything else, ``null``
  included, is a validation error naming the field (Neutron: ``convert_to_boolean``).
* :data:`SafeStr` -- a string that can be stored and sent back as UTF-8: no lone UTF-16
  surrogate (``"\\ud800"`` is valid JSON, but SQLite and the JSON answer cannot encode it).
* :data:`SafeJSON` -- any JSON value (an object such as ``binding:profile``) whose strings
  are safe and whose numbers are finite (``NaN``/``Infinity`` are not JSON; Python's
  parser takes them, the answer could not carry them).
  Bound a length with ``Annotated[SafeStr, StringConstraints(max_length=255)]``.
* :func:`printable` -- a client-given name made safe to quote in an error message.

Validators raise ``ValueError``/``PydanticCustomError``; FastAPI turns them into the
API's 400 answer (``Invalid input: <field>: <msg>``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from metalplane.common.strutils import bool_from_string

__all__ = ["SafeJSON", "SafeStr", "StrictishBool", "check_safe_json", "check_safe_str",
           "printable", "to_bool"]


def printable(value: object, limit: int = 64) -> str:
    """``value`` as text fit for an error message: lone surrogates shown as ``\\udXXX``
    escapes, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def to_bool(value: object) -> bool:
    """``value`` read by :func:`~metalplane.common.strutils.bool_from_string` (strict).
    Raises ValueError, quoting the value as Neutron does."""
    try:
        return bool_from_string(value, strict=True)
    except ValueError:
        raise ValueError(f"'{printable(value)}' cannot be converted to boolean") from None


def check_safe_str(value: str) -> str:
    """``value`` unchanged. Raises ValueError if it holds a lone UTF-16 surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the string holds a lone UTF-16 surrogate (not valid Unicode)"
                         ) from None
    return value


def check_safe_json(value: Any) -> Any:
    """``value`` unchanged. Raises ValueError for a non-finite number or an unsafe string
    (key or value) anywhere inside it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_safe_str(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


StrictishBool = Annotated[bool, BeforeValidator(to_bool)]
SafeStr = Annotated[str, AfterValidator(check_safe_str)]
SafeJSON = Annotated[Any, AfterValidator(check_safe_json)]

