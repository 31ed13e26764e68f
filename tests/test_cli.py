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
    assert cli.describe(FileNotFoundError("data.root /d is not a folder")) == (
        "data.root /d is not a folder"
    )
    assert cli.describe(FileNotFoundError(errno.ENOENT, "No such file", "/a.png")) == (
        "no such file or directory (/a.png)"
    )
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


def test_orbax_disk_full_is_translated_to_the_one_line():
    # The error orbax raised when a checkpoint save filled a 100 kB tmpfs (captured from a real run).
    tensorstore = ValueError(
        'RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/3.orbax-checkpoint-tmp/'
        'state.orbax-checkpoint-tmp/_sharding": Failed writing: "/w/checkpoints/3.orbax-checkpoint-'
        'tmp/state.orbax-checkpoint-tmp/_sharding.__lock": Failed to write 1229 bytes to file 16: '
        "No space left on device [os_error_code='28']"
    )
    found = errors.os_error_of(tensorstore)
    assert found.errno == errno.ENOSPC
    assert (
        found.filename
        == "/w/checkpoints/3.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/_sharding"
    )
    assert cli.describe(tensorstore).startswith("no space left on the device (/w/checkpoints/3.")
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.EACCES, "Permission denied", "/ro/x")
    assert cli.describe(wrapped) == (
        "permission denied (/ro/x): choose a writable location or fix its permissions"
    )
    buggy = KeyError("x")
    buggy.__context__ = FileNotFoundError(
        errno.ENOENT, "gone", "/f"
    )  # raised while handling: a bug
    assert cli.describe(buggy) is None


def test_library_modules_define_no_flags():
    # Libraries that tests and notebooks import beside a main must not define absl flags of their own
    # (a `--batch_size` in the robustness library once clashed with `tljax.predict`'s).
    code = (
        "from absl import flags\n"
        "import tljax.corruption_eval, tljax.adapt, tljax.train, tljax.imageopt, tljax.experiments\n"
        "by_module = flags.FLAGS.flags_by_module_dict()\n"
        "shared = {'tljax.cli', 'tljax.parallel.distributed'}\n"  # the flags every main takes
        "print(sorted(m for m in by_module if m.startswith('tljax') and m not in shared))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
