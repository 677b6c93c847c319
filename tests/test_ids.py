from __future__ import annotations

import re
from collections import Counter

from clove.kit.ids import ALPHABET, PREFIX_LENGTHS, new_id, random_base62


def test_every_prefix_gets_its_length_of_base62() -> None:
    for prefix, length in PREFIX_LENGTHS.items():
        value = new_id(prefix)
        assert re.fullmatch(rf"{prefix}_[A-Za-z0-9]{{{length}}}", value), value


def test_all_62_characters_occur_evenly() -> None:
    counts = Counter("".join(random_base62(43) for _ in range(5000)))
    assert set(counts) == set(ALPHABET)
    expected = 5000 * 43 / 62
    # Catches a gross skew (a character never drawn, or one drawn twice as often).
    assert all(abs(n - expected) < expected * 0.1 for n in counts.values())


def test_ids_do_not_repeat() -> None:
    assert len({new_id("req") for _ in range(10_000)}) == 10_000
