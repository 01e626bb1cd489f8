"""Output folders appear whole or not at all, never destroy what they should not, and are
checked before any work starts (issue: output folders that never lose data)."""

import os
import stat
import subprocess
import sys

import pytest

from imcsim.app.outputs import MARKER, OutputDir, check_target, to_csv
from imcsim.errors import ConfigError


def _made(tmp_path, name, **files):
    """An earlier imcsim output folder."""
    with OutputDir(tmp_path / name) as out:
        for k, v in files.items():
            out.text(k, v)
    return tmp_path / name


def test_commit_and_abort(tmp_path):
    with OutputDir(tmp_path / "a") as out:
        out.json("x.json", {"v": 1, "bad": float("inf")})
        assert not (tmp_path / "a").exists()  # nothing visible until the end
    assert (tmp_path / "a" / "x.json").read_text().strip().startswith("{")
    assert '"bad": null' in (tmp_path / "a" / "x.json").read_text()  # standard JSON: no Infinity
    assert (tmp_path / "a" / MARKER).is_file()
    with pytest.raises(RuntimeError):
        with OutputDir(tmp_path / "b") as out:
            out.text("half.txt", "half")
            raise RuntimeError("boom")
    assert not (tmp_path / "b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no partial folder, no lock file left


def test_existing_output_folder_needs_force_and_is_replaced_whole(tmp_path):
    r = _made(tmp_path, "r", **{"old.txt": "old"})
    with pytest.raises(ConfigError, match="already exists; use --force"):
        OutputDir(r)
    with OutputDir(r, force=True) as out:
        out.text("new.txt", "new")
    assert sorted(p.name for p in r.iterdir()) == [MARKER, "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    # a leftover of an older scheme (a dangling '.r.old' link) does not get in the way
    (tmp_path / ".r.old").symlink_to(tmp_path / "nowhere")
    with OutputDir(r, force=True) as out:
        out.text("newer.txt", "x")
    assert (r / "newer.txt").is_file()


def test_force_never_replaces_a_folder_that_is_not_an_output_folder(tmp_path, monkeypatch):
    thesis = tmp_path / "work"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("years of work")
    with pytest.raises(ConfigError, match="not an imcsim output folder"):
        OutputDir(thesis, force=True)
    assert (thesis / "thesis.txt").read_text() == "years of work"
    monkeypatch.chdir(thesis)
    for special in (".", str(thesis), "/", os.path.expanduser("~")):
        with pytest.raises(ConfigError, match="refusing to use"):
            OutputDir(special, force=True)
    assert (thesis / "thesis.txt").is_file()


def test_force_never_replaces_a_folder_holding_an_input(tmp_path):
    r = _made(tmp_path, "run", **{"model.pt": "weights"})
    with pytest.raises(ConfigError, match="it contains .*model.pt.*an input of this run"):
        OutputDir(r, force=True, inputs=[r / "model.pt"])
    assert (r / "model.pt").is_file()


def test_bad_paths_are_refused_before_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_target(tmp_path / "file" / "sub")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        check_target(tmp_path / "file")
    with pytest.raises(ConfigError, match="bytes long; the file system allows at most 255"):
        check_target(tmp_path / ("n" * 300))
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(ConfigError, match="is a dangling symbolic link"):
        check_target(tmp_path / "dangling")
    with pytest.raises(ConfigError, match="--out is empty"):
        check_target("")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(ConfigError, match="no permission to write"):
                check_target(ro / "out")
        finally:
            ro.chmod(0o700)


def test_concurrent_runs_on_one_target_are_refused(tmp_path):
    first = OutputDir(tmp_path / "x")
    with pytest.raises(ConfigError, match=rf"another imcsim run \(PID {os.getpid()}\) is writing to"):
        OutputDir(tmp_path / "x")
    first.text("a.txt", "a")
    first.commit()
    assert (tmp_path / "x" / "a.txt").is_file()


def test_a_target_that_appears_meanwhile_is_not_overwritten(tmp_path):
    out = OutputDir(tmp_path / "y")
    out.text("result.txt", "mine")
    (tmp_path / "y").mkdir()  # someone else makes it
    (tmp_path / "y" / "theirs.txt").write_text("theirs")
    with pytest.raises(ConfigError, match="appeared while this run was working.*results are in"):
        out.commit()
    assert (tmp_path / "y" / "theirs.txt").read_text() == "theirs"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("y.new-")]
    assert len(kept) == 1 and (kept[0] / "result.txt").read_text() == "mine"


def test_stale_partials_of_a_killed_run_are_cleaned(tmp_path):
    out = OutputDir(tmp_path / "z")
    out.text("half.txt", "half")
    out._unlock()  # as if the process had been killed: partial folder left, lock released
    assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    with OutputDir(tmp_path / "z") as again:
        again.text("whole.txt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z"]


def test_partials_the_marker_never_reached_are_cleaned_but_not_others(tmp_path):
    empty = tmp_path / ".w.abc123.partial"  # a disk that filled before the marker was written
    empty.mkdir()
    (tmp_path / ".w.def456.partial").mkdir()
    (tmp_path / ".w.def456.partial" / f".{MARKER}.xyz.tmp").write_text("")  # the marker's temporary file
    foreign = tmp_path / ".w.mine.partial"  # not imcsim's: it holds a file we did not write
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with OutputDir(tmp_path / "w") as out:
        out.text("r.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.mine.partial", "w"]
    assert (foreign / "notes.txt").read_text() == "keep me"


_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, (sys.argv[2] + "\\n").encode())
print("held", flush=True)
time.sleep(120)
"""


def _holder(lock, owner_pid):
    """Another process holding ``lock`` (as a run's orphaned worker would) that names
    ``owner_pid`` as the run owning it."""
    h = subprocess.Popen([sys.executable, "-c", _HOLD, str(lock), str(owner_pid)], stdout=subprocess.PIPE, text=True)
    assert h.stdout.readline().strip() == "held"
    return h


def test_a_lock_whose_owner_died_is_taken_over_and_a_live_one_is_named(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    h = _holder(tmp_path / ".x.lock", dead.pid)
    try:
        with OutputDir(tmp_path / "x") as out:  # before: "another imcsim run is writing to 'x'", forever
            out.text("a.txt", "a")
        assert f"(PID {dead.pid}) has ended, but processes it started still hold its lock" in capsys.readouterr().err
        assert (tmp_path / "x" / "a.txt").read_text() == "a" and not (tmp_path / ".x.lock").exists()
    finally:
        h.kill()
        h.wait()
    h = _holder(tmp_path / ".y.lock", os.getpid())  # a live owner: refused, naming it
    try:
        with pytest.raises(ConfigError, match=rf"another imcsim run \(PID {os.getpid()}\) is writing to"):
            OutputDir(tmp_path / "y")
    finally:
        h.kill()
        h.wait()


_RUN_THAT_FORKS_AND_DIES = """
import os, sys, time
from imcsim.app.outputs import OutputDir
out = OutputDir(sys.argv[1])
child = os.fork()
if child == 0:  # a study worker, still running when its run dies
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
os._exit(0)  # the run dies as with kill -9: no cleanup, the lock file stays
"""


def test_forked_children_do_not_inherit_the_lock(tmp_path, capsys):
    run = subprocess.Popen([sys.executable, "-c", _RUN_THAT_FORKS_AND_DIES, str(tmp_path / "f")], stdout=subprocess.PIPE,
                           text=True)
    child = int(run.stdout.readline())
    run.wait()
    try:
        assert (tmp_path / ".f.lock").exists()
        OutputDir(tmp_path / "f").abort()  # free at once: the child closed its copy of the lock
        assert "has ended" not in capsys.readouterr().err  # no takeover was needed
    finally:
        os.kill(child, 9)


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with OutputDir(tmp_path / "u") as out:
            out.text("r.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "u").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "u" / "r.txt").stat().st_mode) == 0o644


def test_a_swallowed_interrupt_still_cancels(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with OutputDir(tmp_path / "c", cancelled=lambda: True) as out:
            out.text("x.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_csv():
    assert to_csv([{"a": 1, "b": 0.5}, {"a": 2, "c": "x"}]) == "a,b,c\n1,0.5,\n2,,x\n"


def test_results_name_the_source_they_ran(tmp_path):
    """machine_info (every benchmark JSON, run.json) records the git commit imcsim runs from
    and whether tracked files differ from it; None outside a checkout."""
    import shutil
    import subprocess

    from imcsim.io import source_revision

    assert source_revision(str(tmp_path)) is None  # no .git: an installed copy
    repo = tmp_path / "repo"
    repo.mkdir()
    if shutil.which("git") is None:
        (repo / ".git").mkdir()
        assert source_revision(str(repo)) is None  # a checkout, but no git to ask
        return

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    sha = git("rev-parse", "HEAD").strip()
    assert source_revision(str(repo)) == {"commit": sha, "modified": False}
    (repo / "b.txt").write_text("untracked\n")  # untracked files are not the measured code
    source_revision.cache_clear()
    assert source_revision(str(repo)) == {"commit": sha, "modified": False}
    (repo / "a.txt").write_text("two\n")
    source_revision.cache_clear()
    assert source_revision(str(repo)) == {"commit": sha, "modified": True}
    source_revision.cache_clear()
