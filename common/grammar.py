"""The contract's grammars, defined once: a cameraId, a decimal and a whole number."""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "CAMERA_ID_PATTERN",
    "CAMERA_ID_RULE",
    "CAMERA_PREFIX_PATTERN",
    "DECIMAL_PATTERN",
    "WHOLE_NUMBER_PATTERN",
    "is_camera_id",
]

CAMERA_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: the cameraId grammar in words, for error messages
CAMERA_ID_RULE: Final = "1-64 characters of A-Z a-z 0-9 . _ -"
#: the start of a cameraId (empty matches every id), for filtering by prefix
CAMERA_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{0,64}")

#: A finite decimal number: optional sign, digits, optional fraction and exponent,
#: ASCII digits only (Python's float() also takes other scripts' digits and "1_000").
DECIMAL_PATTERN: Final = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: A whole number in ASCII digits, optionally signed (int() also takes "1_000" and "٣").
WHOLE_NUMBER_PATTERN: Final = re.compile(r"[+-]?[0-9]+")


def is_camera_id(value: str) -> bool:
    return CAMERA_ID_PATTERN.fullmatch(value) is not None
