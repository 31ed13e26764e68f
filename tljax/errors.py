"""The one exception type for bad input that a user can fix, and the exit codes every CLI uses.

A `UserError` carries what went wrong, where (file, key) and the fix in its message; the CLIs print it as
one line (`tljax.cli.run`). Library errors that are also user errors (`WeightMismatchError`,
`ChecksumError`, ...) subclass it so callers can catch them by their own names.
"""

from __future__ import annotations

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
