"""A fixed pool of daemon threads for blocking store calls, usable with ``loop.run_in_executor``.

Why not the default executor or a ThreadPoolExecutor: a PUT against an S3 that accepts connections and
never replies blocks its thread for boto3's read timeout times its attempts (about 60 s). In the default
executor such threads starve everything else that runs there (the collector's spool commits and sensor
polling) and ``asyncio.run`` waits for them at exit; ThreadPoolExecutor threads are joined at
interpreter exit too. These threads are daemons: a cancelled upload's thread may still be inside boto3,
but it holds up neither other work nor process exit (the spool file stays until a PUT is confirmed,
so nothing is lost; the next start uploads it again under the same key).
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = None


class DaemonThreadPool(concurrent.futures.Executor):
    """``workers`` daemon threads (started on first use) draining one queue of calls."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = max(1, workers)
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"{self.name}: pool is shut down")
            if not self._threads:
                for i in range(self.workers):
                    t = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                    t.start()
                    self._threads.append(t)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = False, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; never waits for a call in progress unless ``wait`` (hung calls stay hung)."""
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            for t in threads:
                t.join()
