"""`python -m tljax.predict`: top-5 names with the weights' own preprocessing; bad files skipped and counted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.assets import foolbox_imagenet_photos, write_bomb_png
from tljax.weights.labels import imagenet_class_names

REPO = Path(__file__).resolve().parents[1]


def _predict(*args: str) -> subprocess.CompletedProcess:
    # A strict stdout, as on a desktop UTF-8 locale (C.UTF-8 would hide encoding bugs).
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run(
        [sys.executable, "-m", "tljax.predict", "--model=efficientnet_lite0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=300,
        env=env,
    )


def test_predicts_the_photo_label_and_skips_unreadable_files_and_bombs(tmp_path):
    photo, label = foolbox_imagenet_photos()[1]  # a folding chair, label 559
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    # Decompression bombs in both of PIL's ranges (a warning below 2x its limit, an error above) and a
    # missing file: each is one line, and the batch still classifies the photo.
    warn = write_bomb_png(tmp_path / "warn.png", 12_000, 8_000)
    bomb = write_bomb_png(tmp_path / "bomb.png", 60_000, 60_000)
    missing = tmp_path / "missing.png"
    # The same photo under a name that is not valid UTF-8: classified and printed with \xff escaped.
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/chair-\xff.jpg"))
    shutil.copy(photo, odd)
    result = _predict(str(broken), str(warn), str(photo), str(bomb), str(missing), str(odd))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(photo) and lines[6] == f"{tmp_path}/chair-\\xff.jpg"
    for top1 in (lines[1], lines[7]):
        assert top1.endswith(f"{imagenet_class_names()[label]} ({label})"), top1
    assert len(lines) == 12  # per image, the path and five classes
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert [line.split()[1].rstrip(":") for line in skipped] == [
        str(p) for p in (broken, warn, bomb, missing)
    ], result.stderr
    assert "decompression-bomb limit" in skipped[1] and "DecompressionBombError" in skipped[2]
    assert "Traceback" not in result.stderr
    assert "4 of 6 file(s) could not be read" in result.stderr


def test_only_unreadable_files_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG truncated")
    result = _predict(str(tmp_path / "a.png"))
    assert result.returncode == 1
    assert "1 of 1 file(s) could not be read" in result.stderr


def test_known_errors_are_one_line_with_exit_code_2(tmp_path):
    photo, _ = foolbox_imagenet_photos()[1]
    cases = {
        f"--weights={tmp_path / 'nope.pth'}": f"no such file: {tmp_path / 'nope.pth'}",
        "--model=resnet5": "unknown --model=resnet5",
        "--weights=not_registered": "unknown weights 'not_registered'",
    }
    for flag, message in cases.items():
        result = _predict(flag, str(photo))
        assert result.returncode == 2, (flag, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], (flag, result.stderr)
        assert "Traceback" not in result.stderr, flag


def test_images_are_decoded_one_batch_at_a_time(tmp_path):
    from PIL import Image

    from tljax import predict, weights

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (40, 30), (50 * i, 0, 0)).save(paths[-1])
    (tmp_path / "bad.png").write_bytes(b"nope")
    paths.insert(2, tmp_path / "bad.png")
    skipped: list[str] = []
    batches = predict.iter_batches(
        paths,
        weights.get_spec("efficientnet_lite0").preprocessing,
        2,
        lambda e: skipped.append(str(e)),
    )
    first = next(batches)
    # Lazy: only what the first batch needed has been read; the bad file comes with the second.
    assert [p for p, _ in first] == paths[:2] and not skipped
    rest = list(batches)
    assert [[p for p, _ in chunk] for chunk in rest] == [paths[3:5], paths[5:]]
    assert len(skipped) == 1 and "bad.png" in skipped[0]
    assert all(x.shape == (224, 224, 3) and x.dtype == np.float32 for _, x in first)
    # Each image's mean red channel reflects its own colour: arrays are not shared between batches.
    reds = [float(x[..., 0].mean()) for chunk in [first, *rest] for _, x in chunk]
    assert reds == sorted(reds) and len(set(reds)) == 5
