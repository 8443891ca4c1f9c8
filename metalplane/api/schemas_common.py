"""Pydantic building blocks both APIs (Bare Metal v1, Networking v2.0) read bodies with.

* :data:`StrictishBool` -- a bool as Ironic and Neutron read one: JSON true/false, 0/1,
  or one of oslo.utils' strings (``'yes'``, ``'off'``, ...); anything else, ``null``
  included, is a validation error naming the field (Neutron: ``convert_to_boolean``).
* :func:`printable` -- a client-given name made safe to quote in an error message.

Validators raise ``ValueError``/``PydanticCustomError``; FastAPI turns them into the
API's 400 answer (``Invalid input: <field>: <msg>``). NaN, Infinity and lone UTF-16
surrogates never reach a model: the app's body guard refuses them in any JSON body.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from metalplane.common.strutils import bool_from_string

__all__ = ["StrictishBool", "printable", "to_bool"]


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


StrictishBool = Annotated[bool, BeforeValidator(to_bool)]

