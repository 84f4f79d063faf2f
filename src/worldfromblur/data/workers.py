"""Worker processes that may die (killed, out of memory): waits that notice, and a pool wound up without hanging.

``concurrent.futures`` reports a dead worker as ``BrokenProcessPool``, except when the worker dies while it sends a
result: the pool's own thread then waits for the rest of the message for ever, and so does every ``result()``
(reproduced with a 200 MB result and the worker killed half a second into it). The data paths that render in worker
processes (the stream's room workers, a synthetic pool's render) wait through :func:`result`, which checks every
``poll_s`` that the workers are alive, and wind a broken pool up with :func:`abandon`.
"""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

POLL_S = 1.0


def result(future: Future, executor: ProcessPoolExecutor | None, poll_s: float = POLL_S):
    """``future.result()``, raising ``BrokenProcessPool`` as soon as one of ``executor``'s workers is found dead."""
    while True:
        try:
            return future.result(timeout=poll_s)
        except FutureTimeout:
            processes = getattr(executor, "_processes", None) or {}
            if any(p.exitcode is not None for p in list(processes.values())):
                raise BrokenProcessPool("a worker process exited") from None


def abandon(executor: ProcessPoolExecutor) -> None:
    """Shut a broken pool down without waiting. Its thread may be stuck reading a dead worker's half-sent result:
    with every worker gone and this process's end of their result pipe closed, that read ends and the thread winds
    the pool up, so that the interpreter can still exit."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.kill()
    writer = getattr(getattr(executor, "_result_queue", None), "_writer", None)
    if writer is not None:
        writer.close()
    executor.shutdown(wait=False, cancel_futures=True)
