"""One model, many callers: a queue whose single worker thread runs requests in batches.

    queue = BatchQueue(predict_batch, max_batch=4)      # predict_batch(list of items) -> list of results
    future = queue.submit(item)                          # concurrent.futures.Future; QueueFull when full
    result = future.result(timeout=30)

Only the worker thread calls `predict_batch`, so however many requests arrive at once the
model runs once at a time and holds the memory of one batch (never two models' worth).
Items that wait while a batch runs are taken together into the next one (up to
`max_batch`; after the first item the worker waits at most `max_wait_s` for more).
A future cancelled before its batch starts is left out of it.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Tuple


class QueueFull(RuntimeError):
    """More requests are waiting than the queue holds."""


class BatchQueue:
    """A bounded queue of items run by one worker thread through `predict_batch`, in batches."""

    def __init__(self, predict_batch: Callable[[List[Any]], List[Any]], max_batch: int = 4,
                 max_wait_s: float = 0.005, max_queued: int = 64, name: str = "model"):
        self.predict_batch = predict_batch
        self.max_batch, self.max_wait_s = max(1, int(max_batch)), float(max_wait_s)
        self._queue: "queue.Queue[Optional[Tuple[Any, Future]]]" = queue.Queue(maxsize=max(1, int(max_queued)))
        self.stats: Dict[str, int] = {"batches": 0, "items": 0, "largest_batch": 0, "running": 0, "most_running": 0}
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name=f"{name}-batches", daemon=True)
        self._worker.start()

    def submit(self, item: Any) -> Future:
        """Queue `item`; its Future gets predict_batch's result for it (or its exception)."""
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests are already waiting for the model") from None
        return future

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Stop the worker after the items already queued."""
        self._queue.put(None)
        self._worker.join(timeout=60)

    def _take_batch(self) -> Optional[List[Tuple[Any, Future]]]:
        first = self._queue.get()
        if first is None:
            return None
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(nxt)
        return [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: List[Tuple[Any, Future]]) -> None:
        with self._lock:
            self.stats["running"] += 1
            self.stats["most_running"] = max(self.stats["most_running"], self.stats["running"])
        try:
            results = self.predict_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"predict_batch returned {len(results)} results for {len(batch)} items")
            for (_, fut), result in zip(batch, results):
                fut.set_result(result)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller; the worker keeps serving
            for _, fut in batch:
                fut.set_exception(exc)
        finally:
            with self._lock:
                self.stats["running"] -= 1
                self.stats["batches"] += 1
                self.stats["items"] += len(batch)
                self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
