"""What every `python -m tljax.<tool>` main shares: one-line errors and the documented exit codes.

    def main(argv): ...            # returns an exit code or None, raises UserError for bad input
    if __name__ == "__main__":
        tljax.cli.run(main)        # instead of absl's app.run

A known error (a `tljax.errors.UserError`, a missing or unreadable file, a full disk) is printed as one
line, `error: <what, where, the fix>`, and the process exits with `EXIT_USER_ERROR`; anything else is a
bug and keeps its traceback. `--verbose` shows the traceback for known errors too. Every such main
also takes the multi-process flags of `tljax.parallel.initialize` (`--coordinator_address`,
`--num_processes`, `--process_id`) and joins the run's other processes before it starts.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from tljax import errors, parallel

_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show the full traceback for known errors (they are one line otherwise)."
)


def describe(error: BaseException) -> str | None:
    """The one-line message for a known, user-fixable error; None for an error that is a bug.

    An error caused by a known `OSError` (a library's wrapper around a full disk, TensorStore's
    `os_error_code=28` under orbax) is described by that `OSError`.
    """
    message = _describe_one(error)
    if message is None:
        os_error = errors.os_error_of(error)
        if os_error is not None and os_error is not error:
            return _describe_one(os_error)
    return message


def _describe_one(error: BaseException) -> str | None:
    if isinstance(error, errors.UserError):
        return _one_line(str(error))
    if isinstance(error, OSError):
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        if error.errno == errno.ENOSPC:
            return f"no space left on the device{where}: free some disk space and rerun the same command"
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"permission denied{where}: choose a writable location or fix its permissions"
        if isinstance(error, FileNotFoundError):
            if error.filename is None and error.args and not isinstance(error.args[0], int):
                return _one_line(str(error))  # raised with a message of its own: keep it
            return f"no such file or directory{where}"
    return None


def _one_line(message: str) -> str:
    return " ".join(message.split())


def run(main: Callable[[list[str]], int | None], **app_kwargs) -> None:
    """Runs an absl `main` with tljax's error policy; exits with its code."""

    def wrapped(argv: Sequence[str]) -> None:
        try:
            # Joins a multi-process run (explicit flags, SLURM or TPU VM) before any JAX work; a no-op
            # for a single process.
            parallel.initialize_from_flags()
            code = main(list(argv))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001 - classified by `describe`, re-raised when unknown
            message = describe(error)
            if message is None or _VERBOSE.value:
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(errors.EXIT_USER_ERROR)
        sys.exit(errors.EXIT_OK if code is None else code)

    app.run(wrapped, **app_kwargs)
