"""One config path per tool: the shipped configs load, are locked and document their command; options
keep real types; `--out` is checked before any work; the CLIs print bad input as one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tljax.errors import UserError
from tljax.imageopt import backbone, dream, featvis, style, topk_patches

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TOOLS = {"style": "style", "dream": "dream", "featvis": "visualize", "top9": "visualize"}
SHIPPED = sorted(p for p in CONFIGS.glob("*.py") if p.stem.split("_")[0] in TOOLS)


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_technique_ships_configs_per_backbone():
    names = {p.stem for p in SHIPPED}
    assert {"style_lite0", "style_vgg19", "style_resnet50", "dream_lite0", "dream_vgg19"} <= names
    assert {"featvis_lite0", "top9_lite0"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_config_is_locked_typed_and_documents_its_command(path):
    module = _load(path)
    config = module.get_config()
    with pytest.raises(AttributeError):
        config.no_such_option = 1  # locked: a typo is an error, not a silent default
    tool = TOOLS[path.stem.split("_")[0]]
    assert f"python -m tljax.{tool} --config=configs/{path.stem}.py" in module.__doc__
    assert "Result" in module.__doc__
    # Real types: lists of taps, sizes, paths, weights and channels are tuples, never comma strings.
    for key in ("content_taps", "style_taps", "sizes", "styles", "objectives", "taps", "channels"):
        if key in config:
            assert isinstance(config[key], tuple), (path.stem, key, config[key])


def test_options_round_trip_through_the_config():
    config = style.default_config()
    assert style.options_from_config(config) == style.StyleOptions()
    config.sizes, config.style_weight = (64, 128), 7.0
    assert style.options_from_config(config).sizes == (64, 128)
    assert dream.options_from_config(dream.default_config()) == dream.DreamOptions()


def test_out_is_checked_before_any_work(tmp_path, monkeypatch):
    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone was loaded before --out was checked")

    monkeypatch.setattr(backbone, "load_backbone", no_backbone)
    (tmp_path / "file").write_text("a regular file")
    image = str(CONFIGS.parent / "bench" / "figures" / "style_lite0.png")
    configs = [style.default_config(), dream.default_config(), featvis.default_config()]
    configs[0].content, configs[0].styles, configs[1].image = image, (image,), image
    configs.append(topk_patches.default_config())
    for config in configs:
        config.out = str(tmp_path / "file" / "out.png")
        run = {"featvis": featvis.run_from_config, "top9": topk_patches.run_from_config}.get(
            config.get("technique"), None
        ) or (style.run_from_config if "content" in config else dream.run_from_config)
        with pytest.raises(UserError, match="is a file, not a directory"):
            run(config)
        config.out = str(tmp_path / "out.xyz")
        with pytest.raises(UserError, match="unknown image suffix"):
            run(config)


def test_cli_prints_bad_input_as_one_line(tmp_path):
    (tmp_path / "file").write_text("a regular file")
    proc = subprocess.run(
        [sys.executable, "-m", "tljax.dream", f"--out={tmp_path / 'file' / 'dream.png'}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "is a file, not a directory" in lines[0]
    assert "Traceback" not in proc.stderr


def test_a_bad_single_image_is_one_line_naming_it(tmp_path, monkeypatch):
    from PIL import Image

    from tljax import cli
    from tljax.errors import BadImageError

    monkeypatch.setattr(backbone, "load_backbone", lambda *a, **k: pytest.fail("loaded a backbone"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("RGB", (64, 64)).save(tmp_path / "bomb.png")
    config = style.default_config()
    config.styles, config.out = (str(tmp_path / "broken.png"),), str(tmp_path / "out.png")
    for bad in ("broken.png", "bomb.png"):
        config.content = str(tmp_path / bad)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64² = 4096 > 2 × 1000: a bomb
        with pytest.raises(BadImageError) as err:
            style.run_from_config(config)
        message = cli.describe(err.value)
        assert message is not None and "\n" not in message and bad in message
    assert not (tmp_path / "out.png").exists()
