"""The one exception type for bad input that a user can fix, and the exit codes every CLI uses.

A `UserError` carries what went wrong, where (file, key) and the fix in its message; the CLIs print it as
one line (`tljax.cli.run`). Library errors that are also user errors (`WeightMismatchError`,
`ChecksumError`, ...) subclass it so callers can catch them by their own names.
"""

from __future__ import annotations

import os
import re

# Exit codes shared by every `python -m tljax.<tool>` and relied on by the sweep launchers.
EXIT_OK = 0
EXIT_FAILED = 1  # the run itself failed (e.g. a NaN loss): retrying as is will not help
EXIT_USER_ERROR = 2  # bad input, config or flags: fix what the message names
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: SIGTERM, state saved; relaunch the same command to resume
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C), state saved or the save abandoned cleanly; resumable


class UserError(Exception):
    """Bad input with a known fix: printed as one line by the CLIs, never as a traceback."""


class ConfigError(UserError, ValueError):
    """A config value out of range, an unknown key, or a config that differs from the workdir's."""


class DataError(UserError, ValueError):
    """A dataset that cannot be used as given: no images, an empty class, class folders that overlap."""


class WorkdirError(UserError):
    """A workdir that cannot be used: locked by another process, unwritable, or holding another run."""


class BadImageError(UserError, ValueError):
    """An image file that cannot be decoded safely (corrupt, truncated, a decompression bomb, an
    unsupported mode). Pipelines skip and count it; single-image tools report it as one line."""


class ImageNotFoundError(UserError, FileNotFoundError):
    """An image path that does not exist (a single-image tool's input): one line naming the path."""


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_LOCAL_FILE = re.compile(r'local file "([^"]+)"')


def os_error_of(error: BaseException, path: str | os.PathLike[str] | None = None) -> OSError | None:
    """The `OSError` behind `error` (itself, its `__cause__` chain, or one TensorStore reports), or None.

    TensorStore, under orbax, reports a full disk as `ValueError: RESOURCE_EXHAUSTED: Error writing
    local file "...": ... No space left on device [os_error_code='28']` (permission errors likewise),
    and orbax re-raises it from its threads. Rebuilt as `OSError(errno, strerror, path)` it gets the
    same one-line message as any other full disk (`tljax.cli.describe`). `path` names the file when
    the message does not.
    """
    seen: set[int] = set()
    chain: BaseException | None = error
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.errno:
            return chain
        text = str(chain)
        match = _OS_ERROR_CODE.search(text)
        if match:
            code = int(match.group(1))
            where = _LOCAL_FILE.search(text)
            filename = where.group(1) if where and path is None else path
            return OSError(
                code, os.strerror(code), None if filename is None else os.fspath(filename)
            )
        # Not __context__: a bug raised while handling an OSError stays a bug.
        chain = chain.__cause__
    return None
