"""atomic.write_dir: all or nothing, and a cache entry another process filled first is kept."""

from __future__ import annotations

import pytest

from idtune import atomic


def _writer(text: str):
    def write(tmp):
        (tmp / "weights.txt").write_text(text)

    return write


def test_write_dir_replaces_by_default_and_keeps_when_asked(tmp_path):
    final = tmp_path / "model"
    atomic.write_dir(final, _writer("first"))
    inode = final.stat().st_ino
    atomic.write_dir(final, _writer("second"), keep_existing=True)
    assert (final / "weights.txt").read_text() == "first"
    assert final.stat().st_ino == inode  # the same directory, never removed under a reader
    atomic.write_dir(final, _writer("third"))
    assert (final / "weights.txt").read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary sibling left


def test_write_dir_failure_leaves_the_old_directory(tmp_path):
    final = tmp_path / "model"
    atomic.write_dir(final, _writer("old"))

    def broken(tmp):
        (tmp / "weights.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic.write_dir(final, broken)
    assert (final / "weights.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
