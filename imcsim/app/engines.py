"""Engines that run a study's tasks: in this process, in local worker processes, or on Ray.

Every engine runs each task with the same number of torch threads (``threads``), hands it
the shared context once per worker (Ray: once into the object store), retries a task that
failed or whose worker died up to ``retries`` more times, and reports each finished result
as it arrives (so the journal keeps it). ``run`` returns {task key: error} of the tasks that
still failed.

* :class:`SerialEngine` -- the default; no extra dependency.
* :class:`ProcessEngine` -- ``--workers N`` local processes (fork on Linux, like torch's
  DataLoader; spawn elsewhere or with IMCSIM_START_METHOD=spawn).
* :class:`RayEngine` -- ``--engine ray``: a local Ray instance, or an existing cluster with
  ``--address`` (docs/studies.md says how to start one). Optional: ``pip install
  'imcsim[ray]'``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch

from ..errors import ConfigError
from . import tasks as T


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class SerialEngine:
    in_process = True
    name = "serial"

    def __init__(self, threads: int | None = None, retries: int = 0):
        self.threads = threads or default_threads(1)
        self.retries = retries
        self.workers = 1

    def run(self, context, tasks, done, inner_progress=False) -> dict:
        failures = {}
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            T.set_context(context, progress=inner_progress)
            for task in tasks:
                for attempt in range(self.retries + 1):
                    try:
                        result = T.run_task(task.fn, task.params)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except (ConfigError, ValueError) as e:  # a mistake in what was asked: no retry
                        failures[task.key] = _describe(e)
                        break
                    except Exception as e:  # noqa: BLE001 -- reported with the task's key
                        if attempt == self.retries:
                            failures[task.key] = _describe(e)
                        continue
                    done(task, result)
                    break
        finally:
            T.set_context(None)
            torch.set_num_threads(old)
        return failures


def _worker_init(context, threads: int) -> None:
    torch.set_num_threads(threads)
    T.set_context(context, progress=False)


def _worker_run(fn: str, params: dict) -> dict:
    try:
        return T.run_task(fn, params)
    except (ConfigError, ValueError) as e:
        return {"__error__": _describe(e), "__final__": True}
    except Exception as e:  # noqa: BLE001
        return {"__error__": _describe(e) + "\n" + traceback.format_exc(limit=3), "__final__": False}


class ProcessEngine:
    in_process = False
    name = "processes"

    def __init__(self, workers: int, threads: int | None = None, retries: int = 2):
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads or default_threads(workers)
        self.retries = retries
        method = os.environ.get("IMCSIM_START_METHOD") or ("fork" if sys.platform.startswith("linux") else "spawn")
        self.ctx = mp.get_context(method)

    def run(self, context, tasks, done, inner_progress=False) -> dict:
        pending = list(tasks)
        attempts: dict[str, int] = {}
        failures: dict[str, str] = {}
        while pending:
            batch, pending = pending, []
            pool = ProcessPoolExecutor(self.workers, mp_context=self.ctx, initializer=_worker_init,
                                       initargs=(context, self.threads))
            broken = False
            try:
                futures = {pool.submit(_worker_run, t.fn, t.params): t for t in batch}
                waiting = set(futures)
                while waiting:
                    finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        task = futures[fut]
                        try:
                            result = fut.result()
                        except BrokenProcessPool as e:  # a worker died (killed, out of memory)
                            broken = True
                            result = {"__error__": f"worker process died ({_describe(e)})", "__final__": False}
                        if "__error__" in result:
                            n = attempts[task.key] = attempts.get(task.key, 0) + 1
                            if result["__final__"] or n > self.retries:
                                failures[task.key] = result["__error__"].splitlines()[0]
                            else:
                                pending.append(task)
                        else:
                            done(task, result)
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                for p in list(getattr(pool, "_processes", {}).values()):
                    p.terminate()
                raise
            finally:
                pool.shutdown(wait=not broken, cancel_futures=True)
        return failures


class RayEngine:
    in_process = False
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int | None = None,
                 retries: int = 2):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--engine ray needs Ray: pip install 'imcsim[ray]'") from None
        self.address = address
        self.workers = workers
        self.threads = threads or 1
        self.retries = retries

    def run(self, context, tasks, done, inner_progress=False) -> dict:
        import ray

        if not ray.is_initialized():
            # no --address: always a new local instance (never an unrelated cluster that happens to run here)
            kw = {"address": self.address} if self.address else {"address": "local",
                                                                 "num_cpus": self.workers or os.cpu_count()}
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", **kw)
        ref = ray.put(context)  # once into the object store; tasks get a reference
        remote = ray.remote(num_cpus=self.threads, max_retries=self.retries)(_ray_task)
        attempts: dict[str, int] = {}
        failures: dict[str, str] = {}
        futures = {remote.remote(ref, t.fn, t.params, self.threads): t for t in tasks}
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            for r in ready:
                task = futures.pop(r)
                try:
                    result = ray.get(r)
                except Exception as e:  # noqa: BLE001 -- a worker died more often than max_retries
                    result = {"__error__": _describe(e).splitlines()[0], "__final__": True}
                if "__error__" in result:
                    n = attempts[task.key] = attempts.get(task.key, 0) + 1
                    if result["__final__"] or n > self.retries:
                        failures[task.key] = result["__error__"].splitlines()[0]
                    else:
                        futures[remote.remote(ref, task.fn, task.params, self.threads)] = task
                else:
                    done(task, result)
        return failures


def _ray_task(context, fn: str, params: dict, threads: int) -> dict:
    torch.set_num_threads(threads)
    T.set_context(context, progress=False)
    return _worker_run(fn, params)


def make_engine(engine: str = "serial", workers: int = 1, *, address: str | None = None, threads: int | None = None,
                retries: int = 2):
    """serial (workers 1), processes (workers > 1 or engine 'processes'), or ray."""
    if engine == "ray":
        return RayEngine(address, workers if workers > 1 else None, threads, retries)
    if address:
        raise ConfigError("--address needs --engine ray")
    if engine == "processes" or workers > 1:
        return ProcessEngine(workers, threads, retries)
    if engine != "serial":
        raise ConfigError(f"--engine must be serial, processes or ray, got {engine!r}")
    return SerialEngine(threads, retries)
