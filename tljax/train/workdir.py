"""The workdir of a run: its lock, the record of the config it was made with, and its final results.

A workdir belongs to one run. What keeps it honest when runs are relaunched unattended (sweeps, SLURM
requeues):

* **Lock** (`WorkdirLock`): `flock` on `<workdir>/.tljax.lock`, which holds the holder's PID, host and
  start time. A second process is refused at once, naming the holder. The kernel drops the lock when its
  holder dies (even by `kill -9`), so a lock file left by a dead process is stale by construction and is
  taken over with a warning. The file is emptied, never deleted, on release (deleting it would let two
  processes lock two different files of the same name). On a file system without `flock` (ENOLCK:
  some NFS/Lustre mounts) the lock is an exclusively created `.tljax.lock.excl` instead, taken over when
  it names a dead process of this host (best effort: two processes taking over the same stale lock at
  the same instant can both succeed).
* **Config record** (`record_config`): `config.json` is the config the run is made with; a relaunch with
  a different config is refused listing the differing keys, unless every differing key is named in
  `resume_with_changes` and is one of `SAFE_TO_CHANGE`. Every start, and every accepted change with its
  old and new values, is appended to `history.jsonl`.
* **Results** (`write_results` / `is_finished` / `read_results`): `results.json` is written atomically
  at the end, stamped with the digest of the config record; a relaunch of a finished run returns the
  recorded results instead of retraining or rewriting them.

Used by `train_and_evaluate` and importable by the sweep engine:

    with WorkdirLock(path):                 # raises WorkdirError naming the holder
        ...
    read_config_record(path)                # the recorded config (dict) or None
    is_finished(path)                       # results.json written for the recorded config
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from absl import logging

from tljax import fileio
from tljax.errors import ConfigError, WorkdirError
from tljax.typing import Config

LOCK_NAME = ".tljax.lock"
EXCLUSIVE_LOCK_NAME = ".tljax.lock.excl"  # the fallback where flock is not supported
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
CONFIG_NAME = "config.json"
HISTORY_NAME = "history.jsonl"
RESULTS_NAME = "results.json"
CONFIG_DIGEST_KEY = "config_digest"

# Keys a resumed run may change (`--resume_with_changes=KEY,...`) without making the record lie about
# how its finished part was made: how long it trains (a changed length also stretches the remaining part
# of a decaying learning-rate schedule), how often it logs, evaluates and saves, and how the input
# pipeline is parallelised. Everything that changes what a finished step computed (lr, data, model,
# seed, ...) needs a new workdir.
SAFE_TO_CHANGE = frozenset(
    {
        "train.steps",
        "train.epochs",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.eval_batch_size",
        "data.num_workers",
        "data.prefetch_batches",
        "probe.cache_dir",
    }
)


def _host() -> str:
    return socket.gethostname()


class WorkdirLock:
    """An exclusive, process-level lock on a workdir (`with WorkdirLock(workdir): ...`).

    `acquire()` raises `WorkdirError` at once (no waiting) when another live process holds it, naming
    that process's PID and host. Locks are per open file, so two `WorkdirLock`s on one workdir exclude
    each other even inside one process.
    """

    def __init__(self, workdir: str | os.PathLike[str]) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._fd: int | None = None
        self._exclusive: Path | None = None  # set when holding the fallback lock

    @staticmethod
    def holder(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
        """What the lock file says about its (last) holder: `{"pid", "host", "since"}`, or None."""
        for name in (LOCK_NAME, EXCLUSIVE_LOCK_NAME):
            try:
                info = json.loads((Path(workdir) / name).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            if isinstance(info, dict):
                return info
        return None

    @staticmethod
    def _record() -> bytes:
        return json.dumps(
            {"pid": os.getpid(), "host": _host(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        ).encode()

    def _in_use(self, info: dict[str, Any], extra: str = "") -> WorkdirError:
        return WorkdirError(
            f"workdir {self.workdir} is in use by process {info.get('pid', '?')} on host "
            f"{info.get('host', '?')} (since {info.get('since', '?')}): wait for it to finish or "
            f"stop it, or use another --workdir{extra}"
        )

    def _acquire_exclusive(self) -> WorkdirLock:
        """The fallback lock: a file created with O_EXCL, stale when it names a dead local process."""
        path = self.workdir / EXCLUSIVE_LOCK_NAME
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    info = json.loads(path.read_text())
                except (FileNotFoundError, json.JSONDecodeError):
                    info = {}  # being written right now: its creator is alive
                pid = info.get("pid")
                if info.get("host") == _host() and isinstance(pid, int) and not _alive(pid):
                    logging.warning(
                        "taking over the stale lock of %s: process %s is no longer running",
                        self.workdir,
                        pid,
                    )
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
                    continue
                raise self._in_use(info, f" (if that process is gone, delete {path})") from None
            os.write(fd, self._record())
            os.fsync(fd)
            self._fd, self._exclusive = fd, path
            return self
        raise self._in_use(self.holder(self.workdir) or {})

    def acquire(self) -> WorkdirLock:
        """Takes the lock or raises `WorkdirError` naming the process that holds it."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in _NO_FLOCK:
                return self._acquire_exclusive()
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise self._in_use(self.holder(self.workdir) or {}) from None
        previous = os.pread(fd, 4096, 0)
        if previous.strip():
            # Nobody holds the flock, yet the file names a holder: that process died without releasing.
            try:
                info = json.loads(previous)
            except json.JSONDecodeError:
                info = {}
            logging.warning(
                "taking over the stale lock of %s: process %s on host %s is no longer running",
                self.workdir,
                info.get("pid", "?"),
                info.get("host", "?"),
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._record(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Releases the lock (emptying the file first, so it does not look stale)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self._exclusive is not None:
            path, self._exclusive = self._exclusive, None
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def check_writable(directory: str | os.PathLike[str], *, flag: str = "--workdir") -> Path:
    """Creates `directory` if needed and proves a file can be written in it; `WorkdirError` if not.

    Called before any work so that an unwritable workdir (or one under a regular file) fails in a
    second, not after an hour of training. `flag` names the option in the message.
    """
    directory = Path(directory).expanduser()
    for parent in (directory, *directory.parents):
        if parent.exists():
            if not parent.is_dir():
                raise WorkdirError(
                    f"{flag} {directory}: {parent} is a file, not a directory; choose another {flag}"
                )
            break
    probe = directory / ".tljax.write_test"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write_bytes(probe, b"", fsync=False)
        os.remove(probe)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise WorkdirError(
            f"{flag} {directory} is not writable ({reason}): choose a writable location or fix its "
            "permissions"
        ) from error
    return directory


def config_record(config: Config) -> dict[str, Any]:
    """`config` as the plain JSON values that `config.json` holds (tuples become lists)."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config, default=str))


def read_config_record(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config the workdir's run is made with (the parsed `config.json`), or None for a new workdir."""
    path = Path(workdir) / CONFIG_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise WorkdirError(
            f"{path} is not valid JSON ({error}); it records how the run was made, so restore it or use "
            "a new --workdir"
        ) from error


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}` (the dotted keys of `--config.a.b`)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


_ABSENT = "<absent>"


def config_differences(
    recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """`{dotted_key: (recorded_value, current_value)}` for every key whose value differs."""
    old, new = flatten(recorded), flatten(current)
    return {
        key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
        for key in sorted(set(old) | set(new))
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
    }


def config_digest(record: Mapping[str, Any]) -> str:
    """A content hash of a config record (stamped into results.json)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _append_history(workdir: Path, event: dict[str, Any]) -> None:
    line = json.dumps(
        {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": _host(), "pid": os.getpid(), **event}
    )
    # One write of a whole line under O_APPEND: a crash leaves at most a torn last line.
    with open(workdir / HISTORY_NAME, "a") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def _short(value: Any) -> str:
    text = json.dumps(value) if value is not _ABSENT else _ABSENT
    return text if len(text) <= 60 else text[:57] + "..."


def record_config(
    workdir: str | os.PathLike[str], config: Config, resume_with_changes: Iterable[str] = ()
) -> dict[str, tuple[Any, Any]]:
    """Records `config` in a new workdir, or checks it against the recorded one; returns the changes.

    A new workdir gets `config.json`. A workdir whose record differs is refused (`ConfigError` listing
    the keys, the recorded and the new values, and the two ways out) unless every differing key is in
    `resume_with_changes` and in `SAFE_TO_CHANGE`; then `config.json` is updated and the change is
    appended to `history.jsonl`. Call it while holding the workdir's lock.
    """
    workdir = Path(workdir)
    allowed = {key.strip() for key in resume_with_changes if key.strip()}
    unsafe = sorted(allowed - SAFE_TO_CHANGE)
    if unsafe:
        raise ConfigError(
            f"--resume_with_changes={','.join(unsafe)}: not safe to change in a resumed run (it would "
            f"change what the finished steps computed); safe keys: {', '.join(sorted(SAFE_TO_CHANGE))}. "
            "Use a new --workdir for this change"
        )
    current = config_record(config)
    recorded = read_config_record(workdir)
    if recorded is None:
        fileio.atomic_write_json(workdir / CONFIG_NAME, current)
        _append_history(workdir, {"event": "start"})
        return {}
    differences = config_differences(recorded, current)
    # Keys that a newer tljax added to the config (absent from an older record) at their default
    # value are not a different run: the old code had no such setting.
    defaults = flatten(config_record(_default_config()))
    added = {
        key: new
        for key, (old, new) in differences.items()
        if old == _ABSENT and key in defaults and defaults[key] == new
    }
    differences = {key: change for key, change in differences.items() if key not in added}
    refused = {key: change for key, change in differences.items() if key not in allowed}
    if refused:
        listed = "; ".join(
            f"{key}: {_short(old)} in the workdir, {_short(new)} now"
            for key, (old, new) in refused.items()
        )
        safe = [key for key in refused if key in SAFE_TO_CHANGE]
        ways = "use a new --workdir for a different run"
        if safe:
            ways += f", or resume with --resume_with_changes={','.join(safe)}"
        unsafe_keys = [key for key in refused if key not in SAFE_TO_CHANGE]
        if unsafe_keys:
            ways += f" ({', '.join(unsafe_keys)} cannot change in a resumed run)"
        raise ConfigError(
            f"workdir {workdir} holds a run made with a different config ({len(refused)} key(s) differ: "
            f"{listed}): {ways}"
        )
    if differences or added:
        finished_before = is_finished(workdir)
        fileio.atomic_write_json(workdir / CONFIG_NAME, current)
        if finished_before and not differences:  # the same run, described with more keys
            results = read_results(workdir) or {}
            results.pop(CONFIG_DIGEST_KEY, None)
            write_results(workdir, results)
        _append_history(
            workdir,
            {
                "event": "resume_with_changes",
                "changes": {k: list(v) for k, v in differences.items()},
                **({"added_with_defaults": added} if added else {}),
            },
        )
        logging.warning(
            "resuming %s with recorded changes: %s",
            workdir,
            ", ".join(
                [f"{k} {_short(o)} -> {_short(n)}" for k, (o, n) in differences.items()]
                + [f"{k} (new key) = {_short(v)}" for k, v in added.items()]
            ),
        )
    else:
        _append_history(workdir, {"event": "resume"})
    return differences


def _default_config() -> Any:
    from tljax.train.defaults import default_config  # (imports the data package: only when needed)

    return default_config()


def write_results(workdir: str | os.PathLike[str], results: Mapping[str, Any]) -> dict[str, Any]:
    """Writes `results.json` atomically, stamped with the digest of the workdir's config record, and
    returns the stamped results (what a later `read_results` gives back)."""
    workdir = Path(workdir)
    record = read_config_record(workdir)
    stamped = dict(results)
    if record is not None:
        stamped[CONFIG_DIGEST_KEY] = config_digest(record)
    fileio.atomic_write_text(workdir / RESULTS_NAME, json.dumps(stamped, indent=2) + "\n")
    return stamped


def read_results(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed `results.json`, or None when the run has not finished (or it is unreadable)."""
    try:
        return json.loads((Path(workdir) / RESULTS_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_finished(workdir: str | os.PathLike[str]) -> bool:
    """True when `results.json` was written for the config now recorded in the workdir.

    A run resumed with changes (e.g. more steps) is unfinished again until it writes new results.
    """
    results, record = read_results(workdir), read_config_record(workdir)
    return (
        results is not None
        and record is not None
        and results.get(CONFIG_DIGEST_KEY) == config_digest(record)
    )
