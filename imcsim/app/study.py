"""Studies: many independent tasks over one shared context, run by an engine, merged in order.

A :class:`Task` names a pure function of :mod:`.tasks` and its JSON-ready parameters (a
hardware config as a dict, chip seed, theta, ...); the shared context (models, data,
technology) is built once and handed to every task. A task's result depends only on the
context and its parameters, so the merged results are the same whichever engine ran the
tasks, in whatever order, on however many workers.

Finished results go to a journal (JSON lines beside the output folder) as they arrive: an
interrupted or failed study keeps them, and ``resume=True`` runs only the tasks the journal
does not hold for the same study (same tasks, same context).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError
from ..io import storage_error


@dataclass(frozen=True)
class Task:
    """key: unique and stable within its study; fn: a name in :data:`.tasks.TASKS`; params:
    JSON-ready keyword arguments; cost: a rough relative run time, a scheduling hint only
    (engines start the costliest tasks first, so that short ones fill the end and the
    workers finish together); it is not part of the task's identity or result."""

    key: str
    fn: str
    params: dict = field(default_factory=dict)
    cost: float = 1.0

    def spec(self) -> str:
        return json.dumps({"key": self.key, "fn": self.fn, "params": self.params}, sort_keys=True)


class StudyError(RuntimeError):
    """Some tasks failed after their retries; the finished ones are in the journal."""

    def __init__(self, failures: dict[str, str], done: int, total: int):
        self.failures = failures
        first = next(iter(failures.items()))
        super().__init__(f"{len(failures)} of {total} tasks failed after retries ({done} finished and kept; "
                         f"run again with --resume to finish): {first[0]}: {first[1]}")


def fingerprint(obj) -> str:
    """SHA-256 of a context: tensors by their bytes, modules by their state and class."""
    h = hashlib.sha256()

    def feed(o):
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        elif isinstance(o, torch.nn.Module):
            h.update(type(o).__qualname__.encode())
            h.update(json.dumps(getattr(o, "arch", None), sort_keys=True, default=str).encode())
            for k, v in o.state_dict().items():
                h.update(k.encode())
                feed(v)
        elif isinstance(o, dict):
            for k in sorted(o, key=str):
                h.update(str(k).encode())
                feed(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                feed(v)
            h.update(b"]")
        elif hasattr(o, "to_dict"):
            feed(o.to_dict())
        elif hasattr(o, "__dataclass_fields__"):
            from dataclasses import asdict

            feed(asdict(o))
        else:
            h.update(repr(o).encode())

    feed(obj)
    return h.hexdigest()


@dataclass
class Study:
    """name: what the study is; context: shared by every task; tasks: in merge order."""

    name: str
    context: dict
    tasks: list[Task]

    def __post_init__(self):
        keys = [t.key for t in self.tasks]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ValueError(f"study {self.name!r}: duplicate task key {dup!r}")

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.name.encode())
        h.update(fingerprint(self.context).encode())
        for t in self.tasks:
            h.update(t.spec().encode())
        return h.hexdigest()


class Journal:
    """Finished task results of one study, appended as JSON lines (flushed and synced), so
    that nothing finished is lost when the study stops."""

    def __init__(self, path: Path | None, study_id: str, resume: bool):
        self.path = Path(path) if path is not None else None
        self.study_id = study_id
        self.done: dict[str, dict] = {}
        if self.path is None:
            return
        if resume and self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                if isinstance(rec, dict) and rec.get("study") == study_id and "key" in rec:
                    self.done[rec["key"]] = rec["result"]

    def add(self, key: str, result: dict) -> None:
        """Append one result, synced. A write that fails (full disk) is undone -- the file
        keeps whole lines only -- and raised as one line naming the file and the bytes."""
        self.done[key] = result
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps({"study": self.study_id, "key": key, "result": result}, allow_nan=True) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as e:
            raise storage_error(e, self.path, len(data)) from None
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end and os.pread(fd, 1, end - 1) != b"\n":  # a line cut short by a crash: start a new one
                data = b"\n" + data
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as e:
                try:
                    os.ftruncate(fd, end)
                except OSError:
                    pass
                raise storage_error(e, self.path, len(data)) from None
        finally:
            os.close(fd)


def run_study(study: Study, engine, *, journal: Path | None = None, resume: bool = False,
              progress: bool = False, stats: dict | None = None) -> dict[str, dict]:
    """Run the study's tasks (those not already in the journal with ``resume``) on
    ``engine``; return {task key: result} in task order. stats: counts of tasks run and
    taken from the journal are added to it."""
    from tqdm.auto import tqdm

    j = Journal(journal, study.fingerprint(), resume)
    todo = sorted((t for t in study.tasks if t.key not in j.done), key=lambda t: -t.cost)  # stable: longest first
    if stats is not None:
        stats["tasks"] = stats.get("tasks", 0) + len(study.tasks)
        stats["resumed"] = stats.get("resumed", 0) + len(study.tasks) - len(todo)
    bar = tqdm(total=len(study.tasks), initial=len(study.tasks) - len(todo), desc=study.name,
               disable=not progress, leave=False, unit="task")
    try:
        def done(task: Task, result: dict) -> None:
            j.add(task.key, result)
            bar.update(1)

        failures = engine.run(study.context, todo, done, inner_progress=progress and engine.in_process) if todo else {}
    finally:
        bar.close()
    mistake = next(((k, f.message) for k, f in failures.items() if f.mistake), None)
    if mistake:  # running again cannot help: an error in what was asked (exit 2), not a failed run
        raise ConfigError(f"{study.name} task {mistake[0]} cannot run as asked: {mistake[1]}")
    if failures:
        raise StudyError({k: f.message for k, f in failures.items()}, len(j.done), len(study.tasks))
    return {t.key: j.done[t.key] for t in study.tasks}


def check_engine_args(engine: str, workers: int, address: str | None) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if address and engine != "ray":
        raise ConfigError("--address needs --engine ray")


ENGINES = ("serial", "processes", "ray")
