"""`SkipReport`: the images a dataset left out, and why.

One report is shared by every split of a `Datasets` and by the worker threads that decode at run time, so
it is guarded by a lock and deduplicated by path (an image that fails every epoch counts once).
"""

from __future__ import annotations

import dataclasses
import threading

from absl import logging

# How many paths a report keeps (and prints); the count is always exact.
MAX_EXAMPLES = 10
# Run-time skips are logged one line each for the first few, then only counted: a folder with thousands of
# truncated files must not flood the training log.
MAX_RUNTIME_LOG_LINES = 5


@dataclasses.dataclass
class SkipReport:
    """Count and first few `(path, reason)` pairs of the examples that were skipped.

    Filled while a folder is indexed (files whose header fails `PIL.Image.verify`; symlinks that lead out
    of their class folder, to a file already indexed, or round a loop) and, through `add`, by
    the pipeline's decode guard at run time (e.g. a truncated JPEG that only fails on full decode). Thread
    safe; a path is counted once however often it fails.
    """

    first: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    _paths: set[str] = dataclasses.field(default_factory=set, repr=False)
    _runtime_logged: int = dataclasses.field(default=0, repr=False)
    _lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )

    @property
    def count(self) -> int:
        """Number of distinct skipped paths."""
        return len(self._paths)

    @property
    def paths(self) -> list[str]:
        """The first few skipped paths, in the order they were found."""
        return [path for path, _ in self.first]

    def add(self, path: str, reason: str, *, runtime: bool = False) -> bool:
        """Record one skipped path; returns False if it was already known. Run-time skips are logged."""
        with self._lock:
            if path in self._paths:
                return False
            self._paths.add(path)
            if len(self.first) < MAX_EXAMPLES:
                self.first.append((path, reason))
            should_log = runtime and self._runtime_logged < MAX_RUNTIME_LOG_LINES
            if should_log:
                self._runtime_logged += 1
        if should_log:
            logging.warning(
                "skipped while decoding (counted, training goes on): %s: %s", path, reason
            )
        return True

    def summary(self) -> str:
        """A few lines for the log: the count and the first paths with their reasons."""
        if not self.count:
            return "no images skipped"
        with self._lock:
            lines = [
                f"{self.count} path(s) skipped (unreadable images, ignored links); first {len(self.first)}:"
            ]
            lines += [f"  {path}: {reason}" for path, reason in self.first]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
