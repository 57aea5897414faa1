"""PNG writing off the sampling thread, so the GPU does not wait on zlib (or on a CPU baseline).

The runners hand every file to an `ImageWriter` (`save`) and mark an image finished with `then(callback)`.
With `workers` > 0 the PNGs are encoded and written by that many threads (Pillow's encoder releases the
GIL) while the next batch is sampled; a file given as a function (e.g. inpainting's biharmonic baseline,
~1 s of SciPy per 512^2 image, which also releases the GIL) is computed on the worker too. The callbacks
(progress bar, finished-image bookkeeping) still run in the runner's thread, in submission order, once
every file submitted before them is on disk. At most `max_pending` files wait in memory (64: 48 MB of
512^2 RGB, 0.8 GB of 2048^2): past that the sampler blocks on the oldest write. With `workers=0` each file
is written before `save` returns.

Files are written atomically (`ldm_lab.data.files`), so an image is finished exactly when all of its files
exist, whatever the thread order. A failed write is raised in the runner's thread by the next `save`,
`then` or `close`, after which the queued writes still finish (`abort`), so a run that fails keeps all it
produced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ldm_lab.tasks.images import save_png


class ImageWriter:
    """`save(rel, image)` PNGs under `root` on `workers` threads; `then(callback)` after they land."""

    def __init__(self, root: Path, *, workers: int = 2, max_pending: int = 64):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"`write_workers` must be an integer >= 0, got {workers!r}")
        self.root = Path(root)
        self.max_pending = max(1, max_pending)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ldm-lab-png") if workers else None
        self._queue: deque[tuple[Future | None, Callable[[], None] | None]] = deque()
        self._files = 0  # writes in the queue

    def save(self, rel: str, image: np.ndarray | Callable[[], np.ndarray]) -> None:
        """Write `image` (see `ldm_lab.tasks.images.save_png`; a function: its result) to root/rel, now
        or on a worker thread."""
        if self._pool is None:
            _write(self.root, rel, image)
            return
        self._settle(limit=self.max_pending - 1)
        self._queue.append((self._pool.submit(_write, self.root, rel, image), None))
        self._files += 1

    def then(self, callback: Callable[[], None]) -> None:
        """Run `callback` (in this thread) once every file saved so far is written."""
        if self._pool is None:
            callback()
            return
        self._queue.append((None, callback))
        self._settle(limit=None)

    def close(self) -> None:
        """Wait for every queued write and run the remaining callbacks; raise the first failed write."""
        try:
            self._settle(limit=0)
        finally:
            self.abort()

    def abort(self) -> None:
        """Let the queued writes finish (files land, callbacks are dropped) and stop the threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._queue.clear()
            self._files = 0

    def _settle(self, *, limit: int | None) -> None:
        """Pop finished entries in order, running callbacks; block on the oldest write while more than
        `limit` writes are queued (None: never block)."""
        while self._queue:
            future, callback = self._queue[0]
            if future is not None:
                if not future.done() and (limit is None or self._files <= limit):
                    return
                self._queue.popleft()
                self._files -= 1
                future.result()  # raises the write's error here, in the runner's thread
            else:
                self._queue.popleft()
                callback()

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _write(root: Path, rel: str, image: np.ndarray | Callable[[], np.ndarray]) -> None:
    save_png(root, rel, image() if callable(image) else image)
