"""The conductor's image cache: checksums, and nodes deploying one image at once."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from metalplane.common.exceptions import Invalid
from metalplane.drivers.modules.image_cache import cache_image


def test_nodes_deploying_one_image_together_share_one_fetch(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    src = tmp_path / "image.raw"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cache_image(tmp_path / "cache", str(src), digest),
                            range(8)))
    assert {c.path for c in got} == {got[0].path}
    assert got[0].path.read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [got[0].path.name]


def test_a_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    src = tmp_path / "image.raw"
    src.write_bytes(b"x" * 1000)
    with pytest.raises(Invalid, match="checksum mismatch"):
        cache_image(tmp_path / "cache", str(src), "0" * 64)
    assert list((tmp_path / "cache").iterdir()) == []
