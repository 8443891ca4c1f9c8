"""String helpers with the semantics the OpenStack APIs use.

``bool_from_string`` reads a boolean as ``oslo_utils.strutils.bool_from_string`` does (the
function behind Ironic's ``args.boolean`` and Neutron's ``convert_to_boolean``), without
depending on oslo.utils at run time; the unit tests compare the two.
"""

from __future__ import annotations

__all__ = ["FALSE_STRINGS", "TRUE_STRINGS", "bool_from_string"]

TRUE_STRINGS = ("1", "t", "true", "on", "y", "yes")
FALSE_STRINGS = ("0", "f", "false", "off", "n", "no")


def bool_from_string(value: object, strict: bool = False, default: bool = False) -> bool:
    """True or False for ``value``: a bool as it is, anything else by its ``str()``,
    stripped and lower-cased, against ``TRUE_STRINGS`` / ``FALSE_STRINGS``.

    An unrecognised value gives ``default``, or, when ``strict``, raises ValueError naming
    the acceptable values.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_STRINGS:
        return True
    if text in FALSE_STRINGS:
        return False
    if strict:
        acceptable = ", ".join(f"'{s}'" for s in TRUE_STRINGS + FALSE_STRINGS)
        raise ValueError(f"Unrecognized value '{value}', acceptable values are: {acceptable}")
    return default
