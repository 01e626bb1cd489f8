"""Engines that run a study's tasks: in this process, in local worker processes, or on Ray.

Every engine runs each task with the same number of torch threads (``threads``), hands it
the shared context once per worker (Ray: once into the object store), retries a task that
failed or whose worker died up to ``retries`` more times, and reports each finished result
as it arrives (so the journal keeps it). ``run`` returns {task key: :class:`Failure`} of the
tasks that still failed.

* :class:`SerialEngine` -- the default; no extra dependency.
* :class:`ProcessEngine` -- ``--workers N`` local processes, started as
  :func:`start_method` decides. Workers ignore Ctrl-C (the main process stops them), die
  with the main process (no orphan keeps running or holds the output lock), and are
  stopped -- terminated, then killed -- when the study is interrupted or fails.
* :class:`RayEngine` -- ``--engine ray``: a local Ray instance, or an existing cluster with
  ``--address`` (docs/studies.md says how to start one). Optional: ``pip install
  'imcsim[ray]'``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import threading
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import torch

from ..errors import ConfigError
from . import tasks as T
from ..allocator import tune_malloc
from .procs import started


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class Failure(NamedTuple):
    """Why a task failed for good: the first line of its error, and whether it was a mistake
    in what was asked (a ConfigError / ValueError: running again cannot help) rather than a
    crash or a dead worker."""

    message: str
    mistake: bool = False

    @classmethod
    def of(cls, result: dict) -> "Failure":
        return cls(result["__error__"].splitlines()[0], bool(result.get("__mistake__")))


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
                        failures[task.key] = Failure(_describe(e), mistake=True)
                        break
                    except Exception as e:  # noqa: BLE001 -- reported with the task's key
                        if attempt == self.retries:
                            failures[task.key] = Failure(_describe(e))
                        continue
                    done(task, result)
                    break
        finally:
            T.set_context(None)
            torch.set_num_threads(old)
        return failures


START_METHODS = ("fork", "forkserver", "spawn")


def start_method(threads: int) -> str:
    """How worker processes start -- decided here only.

    ``fork`` is the fastest (nothing imported or pickled again) but is safe only for workers
    that run torch on one thread: GNU OpenMP's thread pool does not survive ``fork``, and a
    forked worker whose parent had used it hangs in its first parallel region with more than
    one thread. So: ``fork`` for one-thread workers on Linux; ``forkserver`` (workers forked
    from a clean server process that imported torch once, and never ran OpenMP) for more;
    ``spawn`` where there is no fork. IMCSIM_START_METHOD overrides, except that ``fork``
    with more than one thread is refused."""
    env = os.environ.get("IMCSIM_START_METHOD")
    if env:
        if env not in START_METHODS or env not in mp.get_all_start_methods():
            allowed = [m for m in START_METHODS if m in mp.get_all_start_methods()]
            raise ConfigError(f"IMCSIM_START_METHOD must be one of {', '.join(allowed)}, got {env!r}")
        if env == "fork" and threads > 1:
            raise ConfigError(f"IMCSIM_START_METHOD=fork with {threads} threads per worker would deadlock (OpenMP "
                              "does not survive fork); use forkserver or spawn, or --threads 1")
        return env
    if sys.platform.startswith("linux"):
        return "fork" if threads == 1 else "forkserver"
    return "spawn"


def _die_with(main: int) -> None:
    """End this worker when the study's main process ends, however it ends (kill -9
    included): Linux's parent-death signal for a forked worker, and a watchdog thread that
    follows the main process itself -- a forkserver's workers are the server's children, and
    the server waits for them before it ends."""
    if sys.platform.startswith("linux") and os.getppid() == main:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (AttributeError, OSError):  # pragma: no cover - no prctl
            pass
    birth = started(main)
    if birth is None:  # pragma: no cover - it ended before we looked
        os._exit(1)

    def watch():
        while started(main) == birth:
            threading.Event().wait(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="imcsim-main-watch", daemon=True).start()


def _worker_init(context, threads: int, main: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the main process decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the main process's handler (inherited through fork)
    _die_with(main)
    # tqdm would make a multiprocessing lock here (a named semaphore under forkserver / spawn,
    # reported as leaked when the worker is stopped); workers draw no bars
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    tune_malloc()  # a forked worker has it from the main process; forkserver / spawn workers set it here
    torch.set_num_threads(threads)
    T.set_context(context, progress=False)


def _stop(pool: ProcessPoolExecutor, grace: float = 2.0) -> None:
    """Stop a pool's workers now (interrupt, error): cancel what waits, terminate, then kill."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(grace)
        if p.is_alive():
            p.kill()
            p.join(grace)
    pool.shutdown(wait=True)  # the pool's manager thread sees the workers gone and releases its queues


def _worker_run(fn: str, params: dict) -> dict:
    try:
        return T.run_task(fn, params)
    except (ConfigError, ValueError) as e:
        return {"__error__": _describe(e), "__final__": True, "__mistake__": True}
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
        self.start_method = start_method(self.threads)
        self.ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            # torch is imported once, in the server (importing it runs no OpenMP parallel region;
            # importing imcsim does: it builds tables, so imcsim is imported by each worker)
            self.ctx.set_forkserver_preload(["torch"])

    def run(self, context, tasks, done, inner_progress=False) -> dict:
        pending = list(tasks)
        attempts: dict[str, int] = {}
        failures: dict[str, Failure] = {}
        while pending:
            batch, pending = pending, []
            pool = ProcessPoolExecutor(self.workers, mp_context=self.ctx, initializer=_worker_init,
                                       initargs=(context, self.threads, os.getpid()))
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
                                failures[task.key] = Failure.of(result)
                            else:
                                pending.append(task)
                        else:
                            done(task, result)
            except BaseException:  # Ctrl-C, SIGTERM, a journal that cannot be written: no worker goes on
                _stop(pool)
                raise
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

        local = False
        if not ray.is_initialized():
            # no --address: always a new local instance (never an unrelated cluster that happens to run here)
            kw = {"address": self.address} if self.address else {"address": "local",
                                                                 "num_cpus": self.workers or os.cpu_count()}
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            local = not self.address
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", **kw)
            if local:
                _start_ray_reaper(ray)
            for sig, h in handlers.items():  # Ray's core worker installs its own (SIGTERM aborts the process)
                if h is not None:
                    signal.signal(sig, h)
        futures: dict = {}
        try:
            return self._run(ray, context, tasks, done, futures)
        except BaseException:  # Ctrl-C, SIGTERM, a journal that cannot be written: no task goes on
            if local:  # the local instance this run started ends with its processes. No ray.cancel
                # first: a reply that crosses a forced cancel aborts the driver inside Ray's core
                # worker ("Tried to complete task that was not pending", exit 1, seen in CI).
                with _quiet_stderr():
                    ray.shutdown()
            else:
                for f in futures:
                    ray.cancel(f, force=True)
            raise

    def _run(self, ray, context, tasks, done, futures: dict) -> dict:
        ref = ray.put(context)  # once into the object store; tasks get a reference
        remote = ray.remote(num_cpus=self.threads, max_retries=self.retries)(_ray_task)
        attempts: dict[str, int] = {}
        failures: dict[str, Failure] = {}
        futures.update({remote.remote(ref, t.fn, t.params, self.threads): t for t in tasks})
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
                        failures[task.key] = Failure.of(result)
                    else:
                        futures[remote.remote(ref, task.fn, task.params, self.threads)] = task
                else:
                    done(task, result)
        return failures


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 into a temporary file for the block, shown only if the block
    raises. Ray's C++ core worker logs its own teardown there when a stopped run shuts its
    local instance down (e.g. "task_manager.cc: Failed to push error to driver for task",
    under load, seen in CI), and a user who sent Ctrl-C or SIGTERM gets one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            except BaseException:
                os.dup2(saved, 2)
                tmp.seek(0)
                sys.stderr.write(tmp.read().decode("utf-8", "replace"))
                raise
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


# A local Ray instance's processes outlive a main process killed with SIGKILL: its raylet
# dies, but Ray's DashboardAgent and RuntimeEnvAgent stay. So a run that starts a local
# instance also starts a small reaper process, in a session of its own, that waits for the
# main process to end (its pipe closes and the reaper has a new parent, however it ended)
# and then kills every process that still has a file open in that instance's session folder
# (every Ray process keeps its logs open there). Linux only (/proc); elsewhere `ray stop`
# ends them.
_REAPER = """
import os, signal, sys, time
main = os.getppid()
sys.stdin.buffer.read()
while os.getppid() == main:  # the pipe may close before the process has ended (interpreter shutdown)
    time.sleep(0.1)
session = sys.argv[1].rstrip("/") + "/"
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        fds = os.listdir("/proc/%s/fd" % pid)
        if any(os.readlink("/proc/%s/fd/%s" % (pid, fd)).startswith(session) for fd in fds):
            os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass
"""
_REAPERS: list = []  # kept open for the life of this process


def _start_ray_reaper(ray) -> None:
    import subprocess

    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    session = node.get_session_dir_path() if node is not None else None
    if not session or not os.path.isdir("/proc"):
        return
    _REAPERS.append(subprocess.Popen([sys.executable, "-c", _REAPER, session], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))


def _ray_task(context, fn: str, params: dict, threads: int) -> dict:
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C reaches the whole process group, local Ray workers included: the main process
        # decides (as for the process engine), so no task ends half-way with a reply that races it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_malloc()
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
