"""Zeiler–Fergus top-k: a planted answer is found exactly, the streaming merge equals brute force, and
patches are cut from the original images at the receptive field of the winning unit."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tljax.data.sources import ArraySource
from tljax.imageopt import topk_patches as topk
from tljax.imageopt.receptive_field import receptive_fields
from tljax.models.common import TapRecorder

PLUS = np.array(
    [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]],
    np.float32,
)


class Detectors(nn.Module):
    """Fixed weights: `match` channel 0 fires for a red plus, channel 1 for a green 3×3 square (5×5
    filters, stride 1, SAME); `coarse` is a stride-2 3×3 layer on top, so its fields are 7 px wide."""

    @staticmethod
    def tap_names() -> tuple[str, ...]:
        return ("match", "coarse")

    @nn.compact
    def __call__(self, x, train: bool = False, taps=None):
        rec = TapRecorder(taps, self.tap_names(), "Detectors")
        x = nn.Conv(2, (5, 5), padding=2, use_bias=False, name="match")(x)
        if rec.add("match", x):
            return rec.outputs
        x = nn.Conv(2, (3, 3), strides=2, padding=1, use_bias=False, name="coarse")(nn.relu(x))
        rec.add("coarse", x)
        return rec.outputs if taps is not None else x.mean((1, 2))


def detector_variables() -> dict:
    square = np.zeros((5, 5), np.float32)
    square[1:4, 1:4] = 1
    match = np.zeros((5, 5, 3, 2), np.float32)
    # Plus: red counts, green/blue count against (so gray noise or white does not fire); likewise square.
    match[..., 0, 0], match[..., 1, 0], match[..., 2, 0] = PLUS / 255, -PLUS / 255, -PLUS / 255
    match[..., 1, 1], match[..., 0, 1], match[..., 2, 1] = (
        square / 255,
        -square / 255,
        -square / 255,
    )
    coarse = np.zeros((3, 3, 2, 2), np.float32)
    coarse[1, 1] = np.eye(2)  # centre tap only: a stride-2 subsample of `match`
    return {
        "params": {
            "match": {"kernel": jnp.asarray(match)},
            "coarse": {"kernel": jnp.asarray(coarse)},
        }
    }


def planted_dataset(n: int = 40, hw: int = 40, seed: int = 0):
    """Dim noise images; 14 get a red plus and 12 a green square, each at a known place and with its own
    brightness. Returns the images and, per pattern, `{image index: (brightness, top, left)}`."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 10, (n, hw, hw, 3)).astype(np.uint8)
    plus_at, square_at = {}, {}
    for rank, i in enumerate(rng.permutation(n)[:14]):
        top, left = (int(v) for v in rng.integers(0, hw - 5, 2))
        brightness = 0.3 + 0.05 * rank  # all different: the answer is unambiguous
        region = images[i, top : top + 5, left : left + 5]
        region[PLUS > 0] = (round(255 * brightness), 0, 0)
        plus_at[int(i)] = (brightness, top, left)
    for rank, i in enumerate(rng.permutation(n)[:12]):
        if int(i) in plus_at:
            continue
        top, left = (int(v) for v in rng.integers(0, hw - 3, 2))
        brightness = 0.4 + 0.05 * rank
        images[i, top : top + 3, left : left + 3] = (0, round(255 * brightness), 0)
        square_at[int(i)] = (brightness, top, left)
    return images, plus_at, square_at


def test_planted_patterns_are_found_exactly():
    images, plus_at, square_at = planted_dataset()
    model, variables = Detectors(), detector_variables()
    scan = topk.scan_top_activations(
        model, variables, list(images), {"match": [0, 1]}, input_hw=(40, 40), k=9, batch_size=8
    )
    assert scan.trace_count == 1 and scan.num_images == 40
    top = scan.tops["match"]
    fields = receptive_fields(model, ["match"], (40, 40))
    patches = topk.top_patches(scan, fields)["match"]
    for c, planted, size in ((0, plus_at, 5), (1, square_at, 3)):
        expected = sorted(planted, key=lambda i: -planted[i][0])[:9]
        assert top.image_index[c].tolist() == expected
        for j, i in enumerate(expected):
            _, ptop, pleft = planted[i]
            centre = (ptop + size // 2, pleft + size // 2)  # the 5×5 filter aligns centre on centre
            assert (int(top.y[c, j]), int(top.x[c, j])) == centre
            # The patch is the unit's 5×5 field, cut from the original: exactly the planted pixels
            # (for the 3×3 square, with its one-pixel border of background).
            np.testing.assert_array_equal(
                patches[c][j],
                images[i, centre[0] - 2 : centre[0] + 3, centre[1] - 2 : centre[1] + 3],
            )


def test_coarse_layer_crops_contain_the_pattern():
    images, plus_at, _ = planted_dataset()
    model, variables = Detectors(), detector_variables()
    scan = topk.scan_top_activations(
        model, variables, images, {"coarse": [0]}, input_hw=(40, 40), k=9, batch_size=16
    )
    rf = receptive_fields(model, ["coarse"], (40, 40))["coarse"]
    assert rf.size == (7, 7) and rf.jump == (2, 2)  # 5 + (3 - 1) · 1
    top = scan.tops["coarse"]
    for j in range(9):
        i = int(top.image_index[0, j])
        assert i in plus_at  # a stride-2 grid can miss the exact centre by a pixel, never the image
        _, ptop, pleft = plus_at[i]
        btop, bleft, bbottom, bright = rf.box(int(top.y[0, j]), int(top.x[0, j]), clip=False)
        assert btop <= ptop and bleft <= pleft and ptop + 5 <= bbottom and pleft + 5 <= bright


def test_streaming_merge_equals_brute_force():
    # Random weights and images, a batch size that does not divide the dataset: the running top-k over
    # batches must equal a top-k over every image's best unit computed at once.
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (23, 20, 20, 3)).astype(np.float32)
    model = Detectors()
    variables = {
        "params": {
            "match": {"kernel": jnp.asarray(rng.normal(size=(5, 5, 3, 2)), jnp.float32)},
            "coarse": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 2)), jnp.float32)},
        }
    }
    scan = topk.scan_top_activations(
        model,
        variables,
        images,
        {"coarse": None, "match": [1]},
        input_hw=(20, 20),
        k=4,
        batch_size=5,
    )
    acts = model.apply(variables, jnp.asarray(images), taps=("match", "coarse"))
    for tap, channels in (("coarse", [0, 1]), ("match", [1])):
        a = np.asarray(acts[tap])[..., channels]  # [N, h, w, C]
        n, h, w, c = a.shape
        best = a.reshape(n, h * w, c).max(1)  # [N, C]
        where = a.reshape(n, h * w, c).argmax(1)
        order = np.argsort(-best, axis=0)[:4].T  # [C, 4]
        top = scan.tops[tap]
        np.testing.assert_array_equal(top.image_index, order)
        np.testing.assert_allclose(top.values, np.take_along_axis(best.T, order, 1), rtol=1e-5)
        np.testing.assert_array_equal(top.y * w + top.x, np.take_along_axis(where.T, order, 1))
    # Only the winners' pixels are kept.
    winners = {int(i) for t in scan.tops.values() for i in t.image_index.ravel()}
    assert set(scan.originals) == winners


def test_files_sources_and_bad_input(tmp_path):
    images, plus_at, _ = planted_dataset(n=12)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    model, variables = Detectors(), detector_variables()
    selection = {"match": [0]}
    reference = topk.scan_top_activations(
        model, variables, images, selection, input_hw=(40, 40), k=3
    )
    for data in (folder, sorted(folder.iterdir()), ArraySource(images, np.zeros(12, np.int32))):
        scan = topk.scan_top_activations(model, variables, data, selection, input_hw=(40, 40), k=3)
        np.testing.assert_array_equal(
            scan.tops["match"].image_index, reference.tops["match"].image_index
        )
    assert reference.tops["match"].image_index[0, 0] == max(plus_at, key=lambda i: plus_at[i][0])

    with pytest.raises(FileNotFoundError, match="missing.png"):
        topk.scan_top_activations(
            model, variables, [folder / "missing.png"], selection, input_hw=(40, 40)
        )
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.png"):
        topk.scan_top_activations(
            model, variables, [tmp_path / "broken.png"], selection, input_hw=(40, 40)
        )
    with pytest.raises(ValueError, match="valid taps are: match, coarse"):
        topk.scan_top_activations(model, variables, images, {"fc9": [0]}, input_hw=(40, 40))
    with pytest.raises(ValueError, match=r"tap 'match' has 2 channels"):
        topk.scan_top_activations(model, variables, images, {"match": [2]}, input_hw=(40, 40))
    with pytest.raises(ValueError, match="no images"):
        topk.scan_top_activations(model, variables, [], selection, input_hw=(40, 40))


def test_crop_scales_to_the_original_and_pads_past_the_border():
    original = np.arange(80 * 60 * 3, dtype=np.float32).reshape(80, 60, 3) % 251
    # The network saw it at 40×30 (half size): input box rows 10..15, cols 4..9 → original 20..30, 8..18.
    np.testing.assert_array_equal(
        topk.crop_patch(original, (10, 4, 15, 9), (40, 30)), original[20:30, 8:18]
    )
    patch = topk.crop_patch(original, (-2, -3, 3, 2), (40, 30), fill=7.0)
    assert patch.shape == (10, 10, 3)
    assert (patch[:4] == 7).all() and (patch[:, :6] == 7).all()
    np.testing.assert_array_equal(patch[4:, 6:], original[:6, :4])


def test_layer_figure_places_each_patch():
    patches = [
        [np.full((5, 5, 3), 10 * (c + 1) + j, np.float32) for j in range(9)] for c in range(2)
    ]
    figure = topk.layer_figure(patches, cell=8, title=None, columns=2)
    # Two 3×3 blocks of 8 px cells with 1 px separators, 6 px gaps.
    assert figure.shape == (6 + 26 + 6, 6 + 2 * (26 + 6), 3)
    assert (figure[6, 6] == 10).all() and (figure[6 + 9, 6 + 9] == 14).all()
    assert (figure[6, 6 + 26 + 6] == 20).all()


def test_visualize_main_top9_writes_layer_figures(tmp_path, monkeypatch):
    from tljax import visualize
    from tljax.imageopt import backbone

    images, plus_at, _ = planted_dataset(n=20)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    model, variables = Detectors(), detector_variables()
    monkeypatch.setattr(backbone, "load_backbone", lambda *a, **k: (model, variables, None))
    config = topk.default_config()
    config.model, config.weights, config.taps = "detectors", "random", ("match", "coarse")
    config.channels, config.data, config.out = (0, 1, 7), str(folder), str(tmp_path / "top9.png")
    config.input_size, config.k, config.batch_size, config.max_images = 40, 9, 8, 16
    report = visualize.run_from_config(config)
    scan = report["scan"]
    assert scan.num_images == 16 and scan.trace_count == 1
    assert scan.tops["match"].channels.tolist() == [
        0,
        1,
    ]  # channel 7 does not exist in a 2-channel tap
    best = max((i for i in plus_at if i < 16), key=lambda i: plus_at[i][0])
    assert scan.tops["match"].image_index[0, 0] == best
    sizes = {tap: np.asarray(Image.open(path)).shape for tap, path in report["paths"].items()}
    assert set(sizes) == {"all", "match", "coarse"}
    assert sizes["all"][0] == sizes["match"][0] + sizes["coarse"][0]  # layers stacked, first on top


def test_folder_skips_and_counts_bad_and_bomb_images(tmp_path, monkeypatch):
    images, _, _ = planted_dataset(n=6)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    (folder / "03_broken.png").write_bytes(b"not an image at all")
    Image.new("RGB", (200, 200)).save(folder / "04_bomb.png")
    (folder / "notes.txt").write_text("not an image, not counted")
    # 200×200 = 40,000 > 2 × MAX_IMAGE_PIXELS: PIL refuses it as a decompression bomb; the 40×40
    # dataset images stay well below.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    model, variables = Detectors(), detector_variables()
    scan = topk.scan_top_activations(
        model, variables, folder, {"match": [0, 1]}, input_hw=(40, 40), k=3
    )
    reference = topk.scan_top_activations(
        model, variables, images, {"match": [0, 1]}, input_hw=(40, 40), k=3
    )
    assert scan.num_images == 6
    assert sorted(s.split(":")[0].rsplit("/", 1)[1] for s in scan.skipped) == [
        "03_broken.png",
        "04_bomb.png",
    ]
    np.testing.assert_array_equal(scan.tops["match"].values, reference.tops["match"].values)
