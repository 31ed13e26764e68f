"""`python -m tljax.predict`: top-5 names with the weights' own preprocessing; bad files skipped and counted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.assets import foolbox_imagenet_photos
from tljax.weights.labels import imagenet_class_names

REPO = Path(__file__).resolve().parents[1]


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tljax.predict", "--model=efficientnet_lite0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predicts_the_photo_label_and_skips_an_unreadable_file(tmp_path):
    photo, label = foolbox_imagenet_photos()[1]  # a folding chair, label 559
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    result = _predict(str(photo), str(broken))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(photo)
    top1 = lines[1]
    assert top1.endswith(f"{imagenet_class_names()[label]} ({label})"), top1
    assert len(lines) == 6  # the path and five classes
    assert (
        "broken.jpg: cannot read" in result.stderr
        and "1 of 2 file(s) could not be read" in result.stderr
    )


def test_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG truncated")
    result = _predict(str(tmp_path / "a.png"))
    assert result.returncode == 1
    assert "1 of 1 file(s) could not be read" in result.stderr
