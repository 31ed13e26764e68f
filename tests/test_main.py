"""`python -m tljax.main`: locked configs, `--config.a.b=value` overrides, typos refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from tljax import errors

REPO = Path(__file__).resolve().parents[1]


def _parse(argv: list[str]):
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "config", flag_values=flag_values, lock_config=True, sys_argv=argv
    )
    flag_values(argv)
    return flag_values.config


def test_override_changes_one_value():
    argv = [
        "prog",
        f"--config={REPO}/configs/feature_extractor.py:shots=100",
        "--config.optim.lr=0.01",
        "--config.model.dtype=bfloat16",
    ]
    config = _parse(argv)
    assert config.optim.lr == 0.01 and config.model.dtype == "bfloat16"
    assert config.data.train_per_class == 100  # the `:shots=100` argument
    assert config.optim.weight_decay == 1e-4  # everything else as in the file
    with pytest.raises(AttributeError):
        config.optim.new_key = 1  # locked


def test_typo_is_refused_in_process():
    with pytest.raises(AttributeError, match='Did you mean "lr"'):
        _parse(["prog", f"--config={REPO}/configs/feature_extractor.py", "--config.optim.lrr=0.01"])


def test_typo_is_refused_by_the_cli(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tljax.main",
            "--config=configs/feature_extractor.py",
            "--config.optim.lrr=0.01",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "lrr" in result.stderr and 'Did you mean "lr"' in result.stderr
    assert not any(tmp_path.iterdir())  # refused before anything ran


def _tool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_out_of_range_config_is_one_line_exit_2_before_any_work(tmp_path):
    result = _tool(
        "tljax.main",
        "--config=configs/feature_extractor.py",
        "--config.train.steps=-5",
        f"--workdir={tmp_path / 'run'}",
    )
    assert result.returncode == errors.EXIT_USER_ERROR
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: invalid config: train.steps=-5: must be an integer > 0")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_convert_out_under_a_file_is_one_line_before_reading_the_weights(tmp_path):
    (tmp_path / "file").write_text("")
    result = _tool(
        "tljax.convert", "--weights=efficientnet_lite0", f"--out={tmp_path / 'file' / 'out'}"
    )
    assert result.returncode == errors.EXIT_USER_ERROR
    assert result.stderr.strip().splitlines() == [
        f"error: --out {tmp_path / 'file' / 'out'}: {tmp_path / 'file'} is a file, not a "
        "directory; choose another --out"
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--config=configs/nope.py"], "error: --config file configs/nope.py does not exist"),
        (
            ["--config=configs/feature_extractor.py:bogus=1"],
            "error: flag --config=configs/feature_extractor.py:bogus=1: ValueError: config argument "
            "'bogus' unknown",
        ),
        (
            ["--config=configs/feature_extractor.py", "--config.train.steps=abc"],
            "error: flag --config.train.steps=abc: invalid literal for int()",
        ),
    ],
    ids=["missing-file", "bad-config-arg", "bad-value-type"],
)
def test_bad_config_flags_are_one_line(tmp_path, args, line):
    result = _tool("tljax.main", *args, f"--workdir={tmp_path / 'run'}")
    assert result.returncode == errors.EXIT_USER_ERROR, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(line), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_empty_workdir_is_one_line_exit_2_not_the_current_directory(tmp_path):
    config = f"--config={REPO}/configs/feature_extractor.py"
    result = _tool("tljax.main", config, "--workdir=", cwd=tmp_path)
    assert result.returncode == errors.EXIT_USER_ERROR, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --workdir is empty")
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
    assert "Traceback" not in result.stderr
