"""Ray plumbing: connect (or start a local Ray), size an actor pool, stream shards through it.

Actors wrap :class:`pathatlas.attribution.run.worker.ShardWorker` (as :class:`PoolWorker`, which
also caps its BLAS/OpenMP threads), which loads the model once. GPU actors take ``num_gpus``
each; without a GPU the same actors run on CPU, and asking for GPUs where Ray sees none fails at
once (Ray itself would leave the actor pending forever).

The pool survives its actors:

- An actor that dies (its process killed, its node lost, out of memory) is restarted by Ray up to
  ``compute.actor_restarts`` times; one whose restarts are spent is replaced if the cluster has
  room, else dropped. The shard it was running, the one it had reserved, and the shards whose
  writes it had not yet confirmed (a worker writes in the background: a returned shard is durable
  only once the actor's ``flush`` succeeds) go back on the queue for any actor.
- A shard has ``compute.max_attempts`` tries. One that keeps killing its actor is handed to the
  task's ``on_failure`` (which records it in ``/failures``, leaving its done flag unset) and the
  stage goes on. An actor that is unavailable (restarting, or its node unreachable) counts as
  lost: its jobs go to another actor at once, which may compute a shard twice, harmlessly (the
  same bytes into the same chunks, the done flag after them). Transient errors a worker raises
  (see :mod:`pathatlas.attribution.run.transient`) are retried after a jittered backoff; any other
  error raised by the worker (a bug, a bad config) fails the stage at once.
- The pool is sized from the cluster's *available* resources; actors not placed within
  ``compute.placement_timeout_s`` are given up, and with none placed the error names what one actor
  needs and what the cluster has. Every wait has a timeout, so nothing hangs silently.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pathatlas.attribution.run.config import ComputeConfig
from pathatlas.attribution.run.drivers import refresh as refresh_driver_record
from pathatlas.attribution.run.transient import backoff_delay, is_transient
from pathatlas.attribution.run.worker import ShardWorker
from pathatlas.attribution.run.writer import StoreWriteError

LOG = logging.getLogger("pathatlas.pool")

WAIT_S = 5.0  # longest single ray.wait: the loop wakes up to check deadlines and report progress
QUIET_REPORT_S = 60.0  # log what the pool waits for when nothing has happened for this long
FLUSH_INTERVAL_S = 60.0  # confirm an actor's writes at least this often (bounds the work a death loses)
CLOSE_TIMEOUT_S = 30.0  # wait this long for actors to end their threads before killing them
RETRY_BASE_S, RETRY_MAX_S = 1.0, 30.0  # backoff of a shard that hit a transient error
JOB_NOTE = "in pathatlas' "  # the note a stage-stopping error gets, naming its job
PROGRESS_LOG_S = 30.0  # without a progress bar: one log line at most this often, and at the end
RELEASE_WAIT_S = 5.0  # after killing its actors, wait at most this long for Ray to count them free


class ComputeError(RuntimeError):
    """The requested compute cannot be had on this Ray cluster."""


class ActorsLostError(ComputeError):
    """Every actor of a pool was lost (nodes gone, actors killed) with shards left: a later
    try of the same stage may well succeed (Prefect retries it)."""


@dataclass(frozen=True)
class PoolPlan:
    n_actors: int
    device: str
    cpus: int  # cores per actor for decoding (two loader threads per core) and for BLAS/OpenMP threads
    options: dict[str, Any]


def connect(compute: ComputeConfig) -> None:
    """Attach to ``compute.ray_address``, or start a private local Ray sized to this machine (the
    config is the one place that says where to run: ``RAY_ADDRESS`` is not followed)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if compute.ray_address:
        ray.init(address=compute.ray_address, log_to_driver=False)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance: no token files
    ray.init(
        # "local": always a new private instance; without it Ray would try to join the cluster in
        # RAY_ADDRESS or /tmp/ray/ray_current_cluster (any `ray start --head` on this machine) and
        # fail, since num_cpus cannot be given for an existing cluster
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        object_store_memory=compute.object_store_mb * 2**20,
        log_to_driver=False,
        logging_level=logging.WARNING,  # not "Started a local Ray instance" on every run's console
    )
    refresh_driver_record()  # Ray's processes are this driver's now: a kill must not orphan them


def plan_pool(compute: ComputeConfig, n_jobs: int) -> PoolPlan:
    """Decide actor count, device and Ray options: the device from what the cluster has in total,
    the number of actors from what is *available* now (at least one, which then waits up to
    ``compute.placement_timeout_s`` to be placed)."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 0.0)
    if compute.device == "cuda" and gpus <= 0:
        raise ComputeError(
            "compute.device is 'cuda' but the Ray cluster has no GPU "
            f"(resources: {int(cpus)} CPUs, 0 GPUs); use device 'auto' or 'cpu', or point ray_address at a GPU cluster"
        )
    if gpus > 0 and compute.device != "cpu":
        if gpus < compute.gpus_per_actor:
            raise ComputeError(f"gpus_per_actor={compute.gpus_per_actor} but the cluster has only {gpus:g} GPU(s)")
        fit = int(free.get("GPU", 0.0) // compute.gpus_per_actor)
        n = max(1, min(compute.n_actors or fit, fit, n_jobs))
        # A GPU actor decodes its own images: its loader may use its node's cores shared among the
        # node's GPU actors, but it reserves only cpus_per_actor (default 1) so it is always schedulable.
        per_actor = compute.cpus_per_actor or cores_per_gpu_actor(ray.nodes(), compute.gpus_per_actor)
        opts: dict[str, Any] = {"num_gpus": compute.gpus_per_actor, "num_cpus": compute.cpus_per_actor or 1}
        device, env = "cuda", {}
    else:
        per_actor = compute.cpus_per_actor or 1
        if cpus < per_actor:
            raise ComputeError(f"cpus_per_actor={per_actor} but the cluster has only {cpus:g} CPU(s)")
        fit = int(free.get("CPU", 0.0) // per_actor)
        n = max(1, min(compute.n_actors or min(2, fit), fit, n_jobs))
        opts = {"num_gpus": 0, "num_cpus": per_actor}
        device, env = "cpu", {"CUDA_VISIBLE_DEVICES": ""}  # a num_gpus=0 actor on a GPU node still sees it
    # BLAS/OpenMP pools default to every core of the node: N actors would oversubscribe it N-fold.
    threads = str(per_actor)
    env |= {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    opts["runtime_env"] = {"env_vars": env}
    return PoolPlan(n_actors=n, device=device, cpus=per_actor, options=opts)


def cores_per_gpu_actor(nodes: list[dict], gpus_per_actor: float) -> int:
    """The fewest CPU cores any GPU node (``ray.nodes()`` entries) has per GPU actor it can hold (at least 1)."""
    shares = []
    for node in nodes:
        res = node.get("Resources", {})
        if node.get("Alive") and res.get("GPU", 0) >= gpus_per_actor:
            shares.append(int(res.get("CPU", 1) // max(1, int(res["GPU"] // gpus_per_actor))))
    return max(1, min(shares, default=1))


def resources_text(options: dict[str, Any]) -> str:
    """What one actor with Ray ``options`` needs, and what the cluster has in total and free now."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    needs = [(name, float(options.get(key) or 0)) for name, key in (("GPU", "num_gpus"), ("CPU", "num_cpus"))]
    needs = [(name, amount) for name, amount in needs if amount > 0]
    need = " and ".join(f"{amount:g} {name}" for name, amount in needs)
    have = "; ".join(f"{total.get(name, 0):g} {name}s in total, {free.get(name, 0):g} available" for name, _ in needs)
    return (
        f"an actor needs {need}; the Ray cluster has {have} "
        f"(the rest is held by other jobs or actors, or its nodes are gone)"
    )


def limit_threads(cpus: int) -> Any:
    """Cap torch's and every BLAS/OpenMP library's thread pool at ``cpus`` in this process; return the
    threadpoolctl limiter (kept alive by its owner) or None without threadpoolctl."""
    import torch

    torch.set_num_threads(max(1, cpus))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # declared in the pipeline extra; without it only torch is capped
        LOG.warning("threadpoolctl is not installed: BLAS/OpenMP thread pools are not capped")
        return None
    return threadpool_limits(limits=max(1, cpus))


class PoolWorker(ShardWorker):
    """The shard worker as a pool actor: its thread pools capped to its CPU share, and its pid
    known (for logs and fault-injection tests)."""

    def __init__(self, config: Any, store_uri: str, device: str = "cpu", cpus: int = 1) -> None:
        self._thread_limits = limit_threads(cpus)  # before the model and the loader start threads
        super().__init__(config, store_uri, device, cpus)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class PoolRun:
    """What a pool run returns: one summary per job, and the workers' time profiles summed
    (seconds: ``active_s``, ``load_wait_s``, ``explain_s``, ``write_s``, ``write_wait_s``; see
    :meth:`pathatlas.attribution.run.worker.ShardWorker.flush`); ``failed``: the jobs given up
    after ``compute.max_attempts`` tries (each reported to ``on_failure``)."""

    results: list[dict] = field(default_factory=list)
    profile: dict[str, float] = field(default_factory=dict)
    failed: list[tuple] = field(default_factory=list)


FailureCallback = Callable[[tuple, str, int], None]  # (job, the last error, tries made)


def run_pool(
    config: dict,
    store_uri: str,
    compute: ComputeConfig,
    method: str,
    jobs: list[tuple],
    on_result: Callable[[dict], None] | None = None,
    prefetch: bool = False,
    on_failure: FailureCallback | None = None,
    worker: type = PoolWorker,
) -> PoolRun:
    """Run ``ShardWorker.<method>(*job)`` for every job on a pool of actors, then flush them.
    (``worker``: the actors' class, :class:`PoolWorker` by default; another one has the same
    constructor, ``flush`` and ``close``, e.g. the sanity stage's.)

    The actors write to the store themselves; only small summaries come back. Jobs go to
    whichever actor is free, but each actor has its next job reserved as soon as it starts one;
    with ``prefetch`` the reserved job's shard (``job[0]``) is passed as ``prefetch=`` so the
    actor loads it while it computes. A job that is still failing (its actor dying, or a transient
    error) after ``compute.max_attempts`` tries goes to ``on_failure(job, error, tries)``; without
    ``on_failure`` it fails the stage.
    """
    out = PoolRun()
    if not jobs:
        return out
    connect(compute)
    pool = _Pool(config, store_uri, compute, method, prefetch, on_result, on_failure, out, worker)
    try:
        pool.start(plan_pool(compute, len(jobs)), jobs)
        pool.run()
        pool.close()
    finally:
        pool.kill_all()
    return out


# -- the pool's state machine -------------------------------------------------------------------
@dataclass
class _Job:
    args: tuple
    tries: int = 0  # tries that failed so far
    not_before: float = 0.0  # monotonic time before which it is not retried (backoff)
    error: str = ""  # the last error
    result: dict | None = None  # its summary, once returned (kept if it runs again after a lost write)


@dataclass
class _Actor:
    """One actor of the pool. ``state``: ``starting`` (waiting to be placed), ``idle``, ``busy``
    (a job call in flight), ``flushing``, ``recovering`` (after an error: is it back?) or ``dead``."""

    number: int
    handle: Any
    state: str = "starting"
    deadline: float | None = None  # when a starting/recovering actor is given up
    running: _Job | None = None
    reserved: _Job | None = None
    unflushed: list[_Job] = field(default_factory=list)  # returned, writes not yet confirmed
    flushing: list[_Job] = field(default_factory=list)  # what the flush in flight confirms
    oldest_unflushed: float = 0.0
    profile: dict[str, float] = field(default_factory=dict)
    ever_ready: bool = False


class _Pool:
    """Queue, attempts and actors of one :func:`run_pool` call; one ``ray.wait`` loop drives it."""

    def __init__(
        self,
        config: dict,
        store_uri: str,
        compute: ComputeConfig,
        method: str,
        prefetch: bool,
        on_result: Callable[[dict], None] | None,
        on_failure: FailureCallback | None,
        out: PoolRun,
        worker: type = PoolWorker,
    ) -> None:
        import ray

        self.ray = ray
        self.config, self.store_uri, self.compute, self.method = config, store_uri, compute, method
        self.prefetch, self.on_result, self.on_failure, self.out = prefetch, on_result, on_failure, out
        self.worker = worker
        self.queue: deque[_Job] = deque()
        self.jobs: list[_Job] = []  # every job, in the order given
        self.actors: list[_Actor] = []
        self.calls: dict[Any, tuple[_Actor, str]] = {}  # ObjectRef -> (actor, "ready" | "job" | "flush")
        self.replacements_left = 0
        self.last_event = time.monotonic()
        self.lost: list[str] = []  # why actors were lost, for the final error
        self.log = _logger()
        self.free_before: dict[str, float] = {}  # CPUs and GPUs free before the pool started

    # -- setup ---------------------------------------------------------------------------------
    def start(self, plan: PoolPlan, jobs: list[tuple]) -> None:
        self.plan = plan
        free = self.ray.available_resources()
        self.free_before = {name: free.get(name, 0.0) for name in ("CPU", "GPU")}
        self.remote = self.ray.remote(self.worker).options(
            max_restarts=self.compute.actor_restarts, max_task_retries=0, **plan.options
        )
        self.jobs = [_Job(tuple(job)) for job in jobs]
        self.queue.extend(self.jobs)
        self.replacements_left = plan.n_actors * self.compute.max_attempts
        for _ in range(plan.n_actors):
            self._new_actor()

    def _new_actor(self) -> None:
        handle = self.remote.remote(self.config, self.store_uri, self.plan.device, self.plan.cpus)
        actor = _Actor(len(self.actors), handle, deadline=time.monotonic() + self.compute.placement_timeout_s)
        self.actors.append(actor)
        self.calls[handle.__ray_ready__.remote()] = (actor, "ready")

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Until every job has returned (or been given up) and every write is confirmed."""
        while True:
            self._dispatch()
            if self._finished():
                return
            self._check_alive()
            timeout = self._next_timeout()
            ready, _ = self.ray.wait(list(self.calls), num_returns=1, timeout=timeout) if self.calls else ([], [])
            if not self.calls:
                time.sleep(timeout)  # only backoffs to wait for
            for ref in ready:
                actor, kind = self.calls.pop(ref)
                self.last_event = time.monotonic()
                getattr(self, f"_on_{kind}")(actor, ref)
            self._expire()
            self._report_if_quiet()

    def _dispatch(self) -> None:
        """Give each idle actor its next call: a flush when its writes are due to be confirmed, else a job."""
        now = time.monotonic()
        for actor in self.actors:
            if actor.state != "idle":
                continue
            job = actor.reserved or self._take_ready(now)
            actor.reserved = None
            flush_due = actor.unflushed and (job is None or now - actor.oldest_unflushed > FLUSH_INTERVAL_S)
            if flush_due:
                actor.reserved = job  # runs right after the flush
                actor.flushing, actor.unflushed = actor.unflushed, []
                actor.state = "flushing"
                self.calls[actor.handle.flush.remote()] = (actor, "flush")
            elif job is not None:
                actor.reserved = self._take_ready(now) if self.prefetch else None
                hint = {"prefetch": actor.reserved.args[0] if actor.reserved else None} if self.prefetch else {}
                actor.running, actor.state = job, "busy"
                self.calls[getattr(actor.handle, self.method).remote(*job.args, **hint)] = (actor, "job")

    def _take_ready(self, now: float) -> _Job | None:
        for job in self.queue:
            if job.not_before <= now:
                self.queue.remove(job)
                return job
        return None

    def _finished(self) -> bool:
        if self.queue:
            return False
        return all(not a.running and not a.reserved and not a.unflushed and not a.flushing for a in self.actors)

    def _check_alive(self) -> None:
        """No actor left (placed or on its way) while work remains: fail, naming why."""
        if any(a.state != "dead" for a in self.actors):
            return
        left = len(self.queue) + sum(bool(a.running) + len(a.unflushed) for a in self.actors)
        if not any(a.ever_ready for a in self.actors):
            raise ComputeError(
                f"stage {self.method}: no actor could be placed within compute.placement_timeout_s="
                f"{self.compute.placement_timeout_s:g} s: {resources_text(self.plan.options)}"
                + (f"; {self.lost[-1]}" if self.lost else "")
            )
        raise ActorsLostError(
            f"stage {self.method}: every actor of the pool was lost, {left} shard job(s) left "
            f"(last: {self.lost[-1] if self.lost else 'unknown'}); {resources_text(self.plan.options)}"
        )

    def _next_timeout(self) -> float:
        now, times = time.monotonic(), [WAIT_S]
        times += [a.deadline - now for a in self.actors if a.deadline is not None and a.state != "dead"]
        if any(a.state == "idle" for a in self.actors):
            times += [j.not_before - now for j in self.queue]
        return max(0.05, min(times))

    # -- events --------------------------------------------------------------------------------
    def _on_ready(self, actor: _Actor, ref: Any) -> None:
        if actor.state == "dead":
            return
        try:
            self.ray.get(ref, timeout=WAIT_S)
        except self.ray.exceptions.RayActorError as exc:
            if getattr(exc, "actor_init_failed", False):  # its __init__ raised: a config error, not a fault
                raise ComputeError(f"stage {self.method}: a worker could not start: {exc}") from exc
            if isinstance(exc, self.ray.exceptions.ActorUnavailableError):  # restarting: ask again shortly
                time.sleep(0.5)
                self.calls[actor.handle.__ray_ready__.remote()] = (actor, "ready")
                return
            self._dead(actor, f"actor {actor.number} is gone: {_first_line(exc)}", replace=True)
            return
        except self.ray.exceptions.ActorUnschedulableError as exc:  # no node can ever hold it
            self._dead(actor, f"actor {actor.number} cannot be scheduled: {_first_line(exc)}", replace=False)
            return
        except self.ray.exceptions.RuntimeEnvSetupError as exc:
            raise ComputeError(f"stage {self.method}: a worker's runtime environment failed: {exc}") from exc
        except Exception as exc:
            if not _actor_lost(self.ray, exc):
                raise
            self._dead(actor, f"actor {actor.number} is gone: {_first_line(exc)}", replace=True)
            return
        if actor.state == "recovering":
            self.log.info("pool %s: actor %d is back", self.method, actor.number)
        actor.state, actor.deadline, actor.ever_ready = "idle", None, True

    def _on_job(self, actor: _Actor, ref: Any) -> None:
        job, actor.running = actor.running, None
        assert job is not None
        try:
            result = self.ray.get(ref, timeout=WAIT_S)
        except Exception as exc:
            self._call_failed(actor, [job], exc)
            return
        actor.state = "idle"
        if not actor.unflushed:
            actor.oldest_unflushed = time.monotonic()
        actor.unflushed.append(job)
        first = job.result is None
        job.result = result
        if first and self.on_result is not None:  # a job run again after its actor died counts once
            self.on_result(result)

    def _on_flush(self, actor: _Actor, ref: Any) -> None:
        covered, actor.flushing = actor.flushing, []
        try:
            actor.profile = self.ray.get(ref, timeout=WAIT_S)
        except Exception as exc:
            self._call_failed(actor, covered, exc)
            return
        actor.state = "idle"

    def _call_failed(self, actor: _Actor, jobs: list[_Job], exc: Exception) -> None:
        """A job or flush call raised: requeue on a lost actor or a transient error, else fail the stage."""
        what = _error_text(exc)
        if _actor_lost(self.ray, exc):
            self._lose(actor, jobs, what)
            return
        cause = getattr(exc, "cause", exc)
        write_failed = isinstance(cause, StoreWriteError)
        if (write_failed and getattr(cause, "transient", False)) or (not write_failed and is_transient(exc)):
            # the actor is fine; the shards (and, for a failed write, its unconfirmed ones) go again later
            suspects = jobs + (actor.unflushed if write_failed else [])
            if write_failed:
                actor.unflushed = []
            actor.state = "idle"
            for job in suspects:
                self._retry(job, what, delay=True)
            return
        if isinstance(cause, BaseException) and jobs:  # which job, for the one-line summary of the failure
            cause.add_note(f"{JOB_NOTE}job {self.method}{jobs[0].args!r}")
        raise exc  # a bug or a bad config: fail the stage at once, with the worker's traceback

    def _lose(self, actor: _Actor, failed: list[_Job], what: str) -> None:
        """The actor died or is unreachable: its shards go back on the queue; then see whether it comes back."""
        collateral = actor.unflushed + ([actor.reserved] if actor.reserved else [])
        actor.unflushed, actor.reserved = [], None
        self.log.warning(
            "pool %s: actor %d lost (%s); %d shard job(s) requeued",
            self.method,
            actor.number,
            what,
            len(failed) + len(collateral),
        )
        for job in failed:
            self._retry(job, what, delay=False)
        for job in collateral:  # innocent: its writes were lost with the actor; no try counted
            self.queue.appendleft(job)
        self.lost.append(f"actor {actor.number}: {what}")
        actor.state, actor.deadline = "recovering", time.monotonic() + self.compute.placement_timeout_s
        try:
            self.calls[actor.handle.__ray_ready__.remote()] = (actor, "ready")
        except Exception as exc:  # noqa: BLE001 - a handle that cannot take calls is gone
            self._dead(actor, f"actor {actor.number} is gone: {_first_line(exc)}", replace=True)

    def _retry(self, job: _Job, error: str, delay: bool) -> None:
        """Count a failed try of ``job``; requeue it (after a backoff if ``delay``) or give it up."""
        job.tries, job.error = job.tries + 1, error
        if job.tries >= self.compute.max_attempts:
            self.log.error(
                "pool %s: giving up shard job %s after %d tries: %s", self.method, job.args, job.tries, error
            )
            if self.on_failure is None:
                raise ComputeError(f"stage {self.method}: shard job {job.args} failed {job.tries} times: {error}")
            self.on_failure(job.args, error, job.tries)
            self.out.failed.append(job.args)
            job.result = None  # whatever it returned before was not kept
            return
        if delay:
            job.not_before = time.monotonic() + backoff_delay(job.tries, RETRY_BASE_S, RETRY_MAX_S)
        self.log.warning("pool %s: shard job %s requeued (try %d failed: %s)", self.method, job.args, job.tries, error)
        self.queue.append(job)

    def _dead(self, actor: _Actor, why: str, replace: bool) -> None:
        """Give ``actor`` up (kill it); start a replacement if asked and the budget allows."""
        actor.state, actor.deadline = "dead", None
        for ref in [r for r, (a, _) in self.calls.items() if a is actor]:
            del self.calls[ref]
        for job in ([actor.running] if actor.running else []) + actor.flushing:
            self._retry(job, why, delay=False)
        for job in actor.unflushed + ([actor.reserved] if actor.reserved else []):
            self.queue.appendleft(job)
        actor.running, actor.reserved, actor.unflushed, actor.flushing = None, None, [], []
        self.lost.append(why)
        self._kill(actor)
        if replace and self.replacements_left > 0 and (self.queue or self._work_in_flight()):
            self.replacements_left -= 1
            self.log.warning("pool %s: %s; starting a replacement", self.method, why)
            self._new_actor()
        else:
            self.log.warning("pool %s: %s; going on with the other actors", self.method, why)

    def _work_in_flight(self) -> bool:
        return any(a.running or a.unflushed or a.flushing for a in self.actors)

    def _expire(self) -> None:
        """Starting or recovering actors past their placement deadline are given up."""
        now = time.monotonic()
        for actor in self.actors:
            if actor.state in ("starting", "recovering") and actor.deadline is not None and actor.deadline <= now:
                verb = "placed" if actor.state == "starting" else "restarted"
                self._dead(
                    actor,
                    f"actor {actor.number} was not {verb} within {self.compute.placement_timeout_s:g} s "
                    f"({resources_text(self.plan.options)})",
                    replace=False,
                )

    def _report_if_quiet(self) -> None:
        if time.monotonic() - self.last_event < QUIET_REPORT_S:
            return
        self.last_event = time.monotonic()
        states = ", ".join(f"{a.number}: {a.state}" for a in self.actors if a.state != "dead")
        self.log.info(
            "pool %s: still waiting; %d shard job(s) queued; actors %s", self.method, len(self.queue), states or "none"
        )

    # -- teardown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Collect the results and the workers' profiles; let the workers end their threads (bounded wait)."""
        self.out.results.extend(job.result for job in self.jobs if job.result is not None)
        for actor in self.actors:
            for name, seconds in actor.profile.items():
                self.out.profile[name] = self.out.profile.get(name, 0.0) + seconds
        live = [a for a in self.actors if a.state == "idle"]
        refs = [a.handle.close.remote() for a in live]
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=CLOSE_TIMEOUT_S)

    def kill_all(self) -> None:
        """Kill every actor, and wait (briefly) until the cluster counts their resources as free
        again: ``ray.kill`` returns at once, and the next stage sizes its pool from what is free."""
        for actor in self.actors:
            self._kill(actor)
        deadline = time.monotonic() + RELEASE_WAIT_S
        while self.actors and time.monotonic() < deadline:
            free = self.ray.available_resources()
            if all(free.get(name, 0.0) >= amount for name, amount in self.free_before.items()):
                break
            time.sleep(0.05)

    def _kill(self, actor: _Actor) -> None:
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _actor_lost(ray: Any, exc: BaseException) -> bool:
    """True for errors that mean the actor (its process or node) went away, not that the job failed."""
    e = ray.exceptions
    lost = (
        e.RayActorError,  # ActorDiedError, ActorUnavailableError
        e.WorkerCrashedError,
        e.OutOfMemoryError,
        e.ObjectLostError,  # OwnerDiedError, ObjectFetchTimedOutError, ...
        e.NodeDiedError,
        e.LocalRayletDiedError,
        e.GetTimeoutError,  # a result announced as ready that cannot be fetched
    )
    return isinstance(exc, lost) and not isinstance(exc, e.RayTaskError)


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {_first_line(cause)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:3])[:500] if lines else type(exc).__name__


def _logger() -> Any:
    """The Prefect run logger inside a task run (its lines reach the UI), else ``pathatlas.pool``."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a flow or task run
        return LOG


def progress(
    total: int, description: str, logger: Any, bar: bool = True
) -> tuple[Callable[[dict], None] | None, Callable[[], None]]:
    """Progress over ``total`` shard jobs: ``(advance, close)``. With ``bar`` a rich progress bar
    (a terminal); without, an INFO line on ``logger`` every ``PROGRESS_LOG_S`` seconds while jobs
    run, whether or not one finished (a log file, a deployment's log), and one when the last is done."""
    if total == 0:
        return None, lambda: None
    if not bar:
        started, done, stop = time.monotonic(), [0], threading.Event()

        def line() -> None:
            elapsed = time.monotonic() - started
            left = f", ~{elapsed * (total - done[0]) / done[0]:.0f} s left" if 0 < done[0] < total else ""
            logger.info("%s: %d/%d shard job(s) done, %.0f s%s", description, done[0], total, elapsed, left)

        def tick() -> None:
            while not stop.wait(PROGRESS_LOG_S):
                line()

        threading.Thread(target=tick, name=f"progress-{description}", daemon=True).start()

        def advance(_result: dict) -> None:
            done[0] += 1
            if done[0] == total:
                stop.set()
                line()

        return advance, stop.set
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    shown = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )
    task_id = shown.add_task(description, total=total)
    shown.start()
    return (lambda _result: shown.advance(task_id)), shown.stop


def retry_stage(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn`` of the stage tasks (idempotent, so a second try is safe):
    retry when the pool lost every actor (a node went away) or the failure was transient; never
    for config errors, fingerprint mismatches, bugs or a cluster with no room (that waited already)."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - an unreadable result is not a reason to retry
            return False
    if not isinstance(exc, BaseException):
        return False
    return isinstance(exc, ActorsLostError) or (not isinstance(exc, ComputeError) and is_transient(exc))


def record_lost_shard(
    store: Any, stage: str, keys: list[str], shard_index: int, error: str, tries: int, done: Callable[[str], Any]
) -> None:
    """Record a shard job the pool gave up on in ``/failures``: one record per sample of the shard
    and per method ``key`` not ``done`` (``done(key)``: the stage's done flags of ``key``, by
    shard) -- a job's first keys may have been written before a later one killed its actor --
    in group ``<stage>.<key>.<shard>``, replaced on a re-run and cleared by a later success. The
    done flags stay unset, so a re-run tries those keys again. ``stage``: ``attribute`` or
    ``evaluate.<metric>`` (the evaluate stage's records name their metric); every record's category
    is ``shard given up``, whatever the error was."""
    from pathatlas.attribution.run.failures import GIVEN_UP, failure

    shard = store.shards()[shard_index]
    ids = store.sample_ids()[shard.start : shard.stop]
    text = f"gave up after {tries} tries, the last: {error}"
    for key in (k for k in keys if not done(k)[shard_index]):
        records = [
            dict(failure(sid, shard.start + i, stage, key, text, GIVEN_UP), attempts=tries) for i, sid in enumerate(ids)
        ]
        store.record_failures(stage, key, shard, records)
