"""String conversions the OpenStack APIs share, without a runtime dependency on oslo.utils.

:func:`bool_from_string` reads a boolean as ``oslo_utils.strutils.bool_from_string`` does,
which is what Neutron's ``convert_to_boolean`` and Ironic's boolean fields call (strict).
"""

from __future__ import annotations

__all__ = ["FALSE_STRINGS", "TRUE_STRINGS", "bool_from_string"]

TRUE_STRINGS = ("1", "t", "true", "on", "y", "yes")
FALSE_STRINGS = ("0", "f", "false", "off", "n", "no")


def bool_from_string(value: object, strict: bool = True) -> bool:
    """``value`` as a bool, as oslo.utils reads it: a bool is itself; anything else is
    turned into a string (``1`` -> ``'1'``), stripped and lowercased, and must be one of
    :data:`TRUE_STRINGS` or :data:`FALSE_STRINGS`.

    An unrecognised value (``None``, ``'maybe'``, ``2``) raises :class:`ValueError` when
    ``strict`` (the default here, unlike oslo's), else reads as False.
    Source: oslo_utils.strutils.bool_from_string.
    """
    if isinstance(value, bool):
        return value
    lowered = (value if isinstance(value, str) else str(value)).strip().lower()
    if lowered in TRUE_STRINGS:
        return True
    if lowered in FALSE_STRINGS:
        return False
    if strict:
        acceptable = ", ".join(f"'{s}'" for s in sorted(TRUE_STRINGS + FALSE_STRINGS))
        shown = str(value)[:64].encode("utf-8", "backslashreplace").decode("utf-8")
        raise ValueError(f"Unrecognized value '{shown}', acceptable values are: {acceptable}")
    return False
