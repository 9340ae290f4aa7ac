"""Atomic writes leave either the old file or the new one, never a part."""

import pytest

from sim.fileio import atomic_write


def test_writes_bytes_and_text(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write(p, b"one")
    assert p.read_bytes() == b"one"
    atomic_write(p, "two")
    assert p.read_text() == "two"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write(p, b"old")
    with pytest.raises(TypeError):
        atomic_write(p, 12345)  # write fails inside the temp file
    assert p.read_bytes() == b"old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]
