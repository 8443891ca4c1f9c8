"""metalplane's bool_from_string reads every input as oslo.utils' does."""

from __future__ import annotations

import pytest
from oslo_utils import strutils as oslo

from metalplane.common.strutils import bool_from_string

INPUTS: list[object] = [
    True, False, 0, 1, 2, -1, 1.0, 0.0, None, "", " ", "1", "0", "t", "T", "true", "TRUE",
    "True", " yes ", "Yes", "y", "Y", "on", "ON", "f", "F", "false", "False", "off", "no",
    "N", "n", "maybe", "2", "10", "tru", "yes!", "1.0", "nan", "\ud800", [], {}, [1],
]


@pytest.mark.parametrize("value", INPUTS, ids=repr)
def test_strict_matches_oslo(value: object) -> None:
    try:
        expected: object = oslo.bool_from_string(value, strict=True)
    except ValueError:
        expected = ValueError
    try:
        got: object = bool_from_string(value, strict=True)
    except ValueError:
        got = ValueError
    assert got == expected


@pytest.mark.parametrize("value", INPUTS, ids=repr)
def test_lenient_matches_oslo(value: object) -> None:
    assert bool_from_string(value, strict=False) is oslo.bool_from_string(value, strict=False)


def test_strict_is_the_default_and_the_message_names_the_value() -> None:
    with pytest.raises(ValueError, match="Unrecognized value 'maybe'"):
        bool_from_string("maybe")
