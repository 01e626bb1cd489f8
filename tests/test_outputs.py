"""Output folders appear whole or not at all; existing ones are kept without force."""

import pytest

from imcsim.errors import ConfigError
from imcsim.app.outputs import OutputDir, to_csv


def test_commit_and_abort(tmp_path):
    with OutputDir(tmp_path / "a") as out:
        out.json("x.json", {"v": 1})
        assert not (tmp_path / "a").exists()  # nothing visible until the end
    assert (tmp_path / "a" / "x.json").read_text().strip().startswith("{")
    with pytest.raises(RuntimeError):
        with OutputDir(tmp_path / "b") as out:
            out.text("half.txt", "half")
            raise RuntimeError("boom")
    assert not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no partial folder left behind


def test_existing_folder_needs_force_and_is_replaced_whole(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "old.txt").write_text("old")
    with pytest.raises(ConfigError, match="already exists; use --force"):
        OutputDir(tmp_path / "r")
    with OutputDir(tmp_path / "r", force=True) as out:
        out.text("new.txt", "new")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["new.txt"]


def test_a_swallowed_interrupt_still_cancels(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with OutputDir(tmp_path / "c", cancelled=lambda: True) as out:
            out.text("x.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_csv():
    assert to_csv([{"a": 1, "b": 0.5}, {"a": 2, "c": "x"}]) == "a,b,c\n1,0.5,\n2,,x\n"
