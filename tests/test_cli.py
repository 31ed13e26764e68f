import errno
import subprocess
import sys
import textwrap

from tljax import cli, errors


def test_describe_known_and_unknown_errors():
    assert cli.describe(errors.ConfigError("train.steps=-5\n must be > 0")) == (
        "train.steps=-5 must be > 0"
    )
    full = OSError(errno.ENOSPC, "No space left on device", "/w/ckpt")
    assert "no space left" in cli.describe(full) and "/w/ckpt" in cli.describe(full)
    assert cli.describe(KeyError("x")) is None  # a bug keeps its traceback


def _run_tool(tmp_path, body, *args):
    script = tmp_path / "tool.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from tljax import cli, errors
            def main(argv):
            {textwrap.indent(textwrap.dedent(body), "    ")}
            cli.run(main)
            """
        )
    )
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


def test_user_error_is_one_line_and_exit_code(tmp_path):
    proc = _run_tool(tmp_path, "raise errors.UserError('bad --out /x: pick a writable directory')")
    assert proc.returncode == errors.EXIT_USER_ERROR
    assert proc.stderr.strip().splitlines() == ["error: bad --out /x: pick a writable directory"]


def test_verbose_shows_traceback(tmp_path):
    proc = _run_tool(tmp_path, "raise errors.UserError('bad')", "--verbose")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_return_code_passes_through(tmp_path):
    proc = _run_tool(tmp_path, "return errors.EXIT_PREEMPTED")
    assert proc.returncode == errors.EXIT_PREEMPTED
