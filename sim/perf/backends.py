"""Where a sweep's tasks run: a local process pool or a Ray cluster (docs/CLUSTER.md).

:func:`run_points` calls a picklable, module-level ``fn(*args)`` for each argument tuple
and yields a :class:`PointOutcome` per task as it finishes (in completion order). A task
that raises is that task's ``error``; the other tasks go on. Both backends run the same
function on the same arguments, so results (and a sweep's CSV) do not depend on the backend.

- ``pool``: :class:`concurrent.futures.ProcessPoolExecutor` with ``jobs`` processes
  (default: the CPU count); ``jobs=1`` runs inline in this process.
- ``ray``: one Ray task per point, ``resources`` (default ``{"num_cpus": 1}``) each. With
  ``address`` (``HOST:PORT`` of a running head, as printed by ``ray start --head``) it joins
  that cluster; without, it starts a local one with ``jobs`` CPUs and shuts it down after.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

#: The backends, in help order.
BACKENDS = ("pool", "ray")
#: Seconds to wait for a TCP connection to a given Ray head before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


class BackendError(ValueError):
    """A backend cannot run: unknown name, malformed or unreachable address, Ray missing."""


@dataclass
class PointOutcome:
    """One finished task: its index in ``args``, its result or error text, and the worker
    (``host:pid``) that ran it."""

    index: int
    result: Any
    error: str | None
    worker: str


def worker_id() -> str:
    """``host:pid`` of the calling process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _call(fn: Callable[..., Any], args: tuple) -> tuple[Any, str | None, str]:
    """Run ``fn(*args)`` in a worker: ``(result, None, worker)`` or ``(None, error, worker)``
    with the exception's type, message and innermost frame (a failure stays per point)."""
    try:
        return fn(*args), None, worker_id()
    except Exception as exc:  # noqa: BLE001 - reported per point, never lost
        frame = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" (at {frame[0].filename}:{frame[0].lineno})" if frame else ""
        return None, f"{type(exc).__name__}: {exc}{where}", worker_id()


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; :class:`BackendError` naming the fix otherwise."""
    m = re.fullmatch(r"\[?([A-Za-z0-9_.:-]+?)\]?:(\d{1,5})", address.strip())
    if not m or not 0 < int(m.group(2)) < 65536:
        raise BackendError(f"--address '{address}' is not HOST:PORT; fix: pass the head's "
                           "address as printed by 'ray start --head', e.g. 10.0.0.5:6379")
    return m.group(1), int(m.group(2))


def check_reachable(address: str) -> None:
    """Raise :class:`BackendError` unless a TCP connection to ``address`` succeeds."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise BackendError(
            f"no Ray head answers at --address {address} ({exc.strerror or exc}); fix: start "
            "one with 'ray start --head --port PORT' (docs/CLUSTER.md) or omit --address for "
            "a local cluster") from None


def check_backend(backend: str, address: str | None = None, jobs: int | None = None) -> None:
    """Raise :class:`BackendError` for an unknown backend, an address without Ray, a bad
    ``jobs``, or an address no Ray head answers at (checked before any work starts)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend '{backend}'; fix: use one of {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise BackendError("--address needs the ray backend; fix: add --backend ray")
    if jobs is not None and jobs < 1:
        raise BackendError(f"--jobs must be >= 1, got {jobs}")
    if backend == "ray":
        _ray()
        if address is not None:
            check_reachable(address)


def run_points(fn: Callable[..., Any], args: Sequence[tuple], *, backend: str = "pool",
               jobs: int | None = None, address: str | None = None,
               resources: dict[str, float] | None = None) -> Iterator[PointOutcome]:
    """Run ``fn(*a)`` for every ``a`` in ``args`` on ``backend``; yield each outcome as it
    finishes. Ctrl-C cancels what has not started and re-raises."""
    check_backend(backend, address, jobs)
    if not args:
        return iter(())
    if backend == "ray":
        return _run_ray(fn, args, jobs, address, resources or {"num_cpus": 1})
    return _run_pool(fn, args, jobs)


def _run_pool(fn: Callable[..., Any], args: Sequence[tuple], jobs: int | None
              ) -> Iterator[PointOutcome]:
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(args)))
    if jobs == 1:
        for i, a in enumerate(args):
            yield PointOutcome(i, *_call(fn, a))
        return
    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(_call, fn, a): i for i, a in enumerate(args)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                result, error, worker = fut.result()
            except BrokenProcessPool as exc:   # a worker died (OOM killer, segfault)
                result, error, worker = None, f"worker process died: {exc}", "pool"
            yield PointOutcome(i, result, error, worker)
    finally:  # normal end, Ctrl-C, or the consumer stopped early
        pool.shutdown(wait=True, cancel_futures=True)


def _ray():
    try:
        import ray
    except ImportError:
        raise BackendError("Ray is not installed; fix: make install (or pip install "
                           "'ray>=2.58')") from None
    return ray


def _token_auth_if_available() -> None:
    """Send the Ray auth token when there is one (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``
    or ``~/.ray/auth_token``) and ``RAY_AUTH_MODE`` is unset, as ``ray start`` does: a head
    started with a token refuses a driver without one, and one without ignores it."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:  # Ray's own helper also refreshes the RayConfig this process has read already
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # pragma: no cover - a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _run_ray(fn: Callable[..., Any], args: Sequence[tuple], jobs: int | None,
             address: str | None, resources: dict[str, float]) -> Iterator[PointOutcome]:
    ray = _ray()
    started = not ray.is_initialized()
    if started and address is not None:
        _token_auth_if_available()
    if started:
        opts: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                "configure_logging": False}
        try:
            if address is not None:
                ray.init(address=address, **opts)
            else:
                # "local": a new cluster even when one runs on this machine already
                ray.init(address="local", num_cpus=jobs or os.cpu_count() or 1, **opts)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the cluster at --address {address}" if address else "a local cluster"
            raise BackendError(f"Ray could not start or join {where}: "
                               f"{str(exc).splitlines()[0] if str(exc) else exc!r}; fix: see "
                               "docs/CLUSTER.md (same Ray and Python versions everywhere)"
                               ) from None
    refs: dict[Any, int] = {}
    try:
        remote = ray.remote(**resources)(_call)
        refs = {remote.remote(fn, a): i for i, a in enumerate(args)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ref = done[0]
            try:
                result, error, worker = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - worker or node died: this point only
                result, error, worker = None, f"Ray task failed: {type(exc).__name__}: " \
                                              f"{str(exc).splitlines()[0] if str(exc) else ''}", \
                                        "ray"
            yield PointOutcome(refs[ref], result, error, worker)
    except BaseException:
        for ref in refs:
            with contextlib.suppress(Exception):  # already finished
                ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()
