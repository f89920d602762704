"""Shannon entropy with thresholds that depend on the value's character set and length.

A fixed threshold fails both ways: 16 random base62 characters cannot exceed 4 bits per
character (log2 16), while 40 hexadecimal characters never exceed 4 bits (log2 16) however
random they are. So the threshold is a fraction of the entropy that a random string of the
same length and character set reaches.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_BASE32 = re.compile(r"[a-z2-7]+|[A-Z2-7]+")
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+=*")

# Alphabet sizes of the character sets recognised below.
_ALPHABETS = {"hex": 16, "base32": 32, "alnum": 62, "base64": 64, "printable": 94}

# A random string keeps about 85-95 % of the maximum entropy for its length; 0.8 leaves room
# for chance repeats, and still rejects words, identifiers and repeated patterns.
_RANDOM_FRACTION = 0.8


def shannon_entropy(text: str) -> float:
    """Bits per character of `text`, from the frequency of its characters."""
    if not text:
        return 0.0
    length = len(text)
    return -sum((count / length) * math.log2(count / length) for count in Counter(text).values())


def charset(text: str) -> str:
    """Name the smallest character set that contains `text`."""
    if _HEX.fullmatch(text):
        return "hex"
    if _BASE32.fullmatch(text):
        return "base32"
    if _ALNUM.fullmatch(text):
        return "alnum"
    if _BASE64.fullmatch(text):
        return "base64"
    return "printable"


def threshold(text: str) -> float:
    """The entropy a value must reach to count as random, for its length and character set."""
    alphabet = _ALPHABETS[charset(text)]
    reachable = math.log2(max(2, min(len(text), alphabet)))
    return _RANDOM_FRACTION * reachable


def looks_random(text: str) -> bool:
    """Tell whether `text` has the entropy of a random string of its length and character set."""
    return shannon_entropy(text) >= threshold(text)
