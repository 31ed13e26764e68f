"""Metric writers: `metrics.jsonl` + TensorBoard event files, and the console progress line."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from absl import logging


def _import_summary_writer():
    """tensorboardX's SummaryWriter, imported without dragging in PyTorch.

    tensorboardX tries `import torch` at import time only to accept torch tensors; where torch happens to
    be installed that costs seconds and memory for nothing (tljax logs floats). A `None` entry in
    `sys.modules` makes that optional import fail fast; the entry is removed right after, so a later
    `import torch` elsewhere still works.
    """
    import sys

    blocked = "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        from tensorboardX import SummaryWriter
    finally:
        if blocked:
            del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """Appends `{"step", "split", **metrics}` records to `metrics.jsonl` and TensorBoard (tensorboardX).

    On resume from step S, records after S (written by the killed run after its last checkpoint), the
    final "test" records of a run killed while finishing, and a torn last line are cut off the end of
    `metrics.jsonl` — the file is truncated in place, the earlier records are never rewritten — and
    TensorBoard is told to purge them, so curves have no duplicates. A fresh start (S = 0) empties it.
    """

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int = 0):
        SummaryWriter = _import_summary_writer()

        self.path = Path(workdir) / "metrics.jsonl"
        _truncate_after(self.path, resume_step)
        self._file = open(self.path, "a")  # noqa: SIM115 (closed in close())
        self._tb = SummaryWriter(
            str(Path(workdir) / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict[str, Any]]:
        """All records of a metrics.jsonl (a torn last line from a kill is ignored)."""
        records = []
        if Path(path).exists():
            for line in Path(path).read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return records

    def write(self, split: str, step: int, metrics: dict[str, float]) -> None:
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for key, value in metrics.items():
            if math.isfinite(float(value)):
                self._tb.add_scalar(f"{split}/{key}", float(value), int(step))

    def history(self) -> list[dict[str, Any]]:
        self._file.flush()
        return self.read(self.path)

    def close(self) -> None:
        self._file.close()
        self._tb.close()


def _truncate_after(path: Path, resume_step: int) -> None:
    """Cuts `path` before its first record that a run resumed at `resume_step` will write again."""
    if not path.exists():
        return
    keep = 0
    if resume_step:
        with open(path, "rb") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                if (
                    not line.endswith(b"\n")
                    or record.get("step", 0) > resume_step
                    or record.get("split") == "test"  # written after the last step only
                ):
                    break
                keep += len(line)
    if keep < path.stat().st_size:
        os.truncate(path, keep)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """The console line: step, loss, accuracy, images/s over the last interval and the ETA.

    The first interval includes compilation, so the ETA uses the latest interval's rate only.
    """

    def __init__(self, total_steps: int, batch_size: int, start_step: int):
        self.total_steps = total_steps
        self.batch_size = batch_size
        self._last_time = time.perf_counter()
        self._last_step = start_step

    def line(self, step: int, loss: float, accuracy: float) -> tuple[str, float]:
        now = time.perf_counter()
        steps = max(step - self._last_step, 1)
        seconds_per_step = (now - self._last_time) / steps
        self._last_time, self._last_step = now, step
        images_per_second = self.batch_size / max(seconds_per_step, 1e-9)
        eta = seconds_per_step * (self.total_steps - step)
        width = len(str(self.total_steps))
        text = (
            f"step {step:>{width}}/{self.total_steps} | loss {loss:.4f} | acc {100 * accuracy:5.1f}% | "
            f"{images_per_second:7.1f} img/s | ETA {format_duration(eta)}"
        )
        logging.info(text)
        return text, images_per_second


class NullWriter:
    """The metric writer of processes other than 0 in a multi-process run: the run's metrics are
    written once, by process 0 (`tljax.parallel`)."""

    def write(self, split: str, step: int, metrics: dict[str, Any]) -> None:
        del split, step, metrics

    def history(self) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        pass
