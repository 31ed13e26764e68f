"""Tests of the objective-over-taps core: taps, image I/O, the chunked loop, memory checks."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tljax.imageopt import core, images, objective
from tljax.models.common import TapRecorder


class TinyCNN(nn.Module):
    """A two-conv network with the tljax `apply(..., taps=...)` contract (unknown tap → ValueError)."""

    def tap_names(self) -> tuple[str, ...]:
        return ("conv1", "relu1", "conv2", "relu2", "pool")

    @nn.compact
    def __call__(self, x, train: bool = False, taps: Sequence[str] | None = None):
        TapRecorder(taps, self.tap_names(), type(self).__name__)  # refuses unknown names
        out = {}
        x = nn.Conv(4, (3, 3), name="conv1")(x)
        out["conv1"] = x
        out["relu1"] = x = nn.relu(x)
        x = nn.Conv(6, (3, 3), strides=2, name="conv2")(x)
        out["conv2"] = x
        out["relu2"] = x = nn.relu(x)
        out["pool"] = x.mean(axis=(1, 2))
        if taps is None:
            return out["pool"]
        return {t: out[t] for t in taps}


class Pre:
    mean = (120.0, 110.0, 100.0)
    std = (60.0, 50.0, 40.0)


@pytest.fixture(scope="module")
def tiny():
    model = TinyCNN()
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    return model, variables


# ---------------------------------------------------------------------------------------------------- taps


def test_parse_tap_spec():
    assert objective.parse_tap_spec("blocks.10") == objective.TapSpec("blocks.10", None)
    assert objective.parse_tap_spec("blocks.10:37") == objective.TapSpec("blocks.10", 37)
    assert str(objective.parse_tap_spec("layer3.5:2")) == "layer3.5:2"
    for bad in ("", ":3", "relu1:x", "relu1:-1"):
        with pytest.raises(ValueError):
            objective.parse_tap_spec(bad)


def test_taps_fn_preprocesses_and_returns_requested_taps(tiny):
    model, variables = tiny
    taps_fn = objective.make_taps_fn(
        model, variables, ["relu2", "conv1:2", "conv1"], preprocessing=Pre
    )
    assert taps_fn.taps == ("relu2", "conv1")  # channel dropped, duplicates merged
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    got = jax.jit(taps_fn)(image, variables)
    normalised = (image - np.array(Pre.mean)) / np.array(Pre.std)
    want = model.apply(
        variables, jnp.asarray(normalised[None], jnp.float32), taps=("relu2", "conv1")
    )
    assert set(got) == {"relu2", "conv1"}
    for name in got:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def test_unknown_tap_lists_valid_names(tiny):
    model, variables = tiny
    with pytest.raises(
        ValueError, match=r"relu7.*valid taps are: conv1, relu1, conv2, relu2, pool"
    ):
        objective.make_taps_fn(model, variables, ["relu1", "relu7"])


def test_preprocess_deprocess_roundtrip():
    x = jnp.asarray(np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3)), jnp.float32)
    y = objective.preprocess(x, Pre)
    np.testing.assert_allclose(y[..., 2], (x[..., 2] - 100.0) / 40.0, rtol=1e-6)
    np.testing.assert_allclose(objective.deprocess(y, Pre), x, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------------- I/O


def test_save_load_roundtrip(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (7, 9, 3)).astype(np.float32)
    path = images.save_image(tmp_path / "sub" / "x.png", pixels)
    loaded = images.load_image(path)
    assert loaded.dtype == np.float32 and loaded.shape == (7, 9, 3)
    np.testing.assert_array_equal(loaded, pixels)
    # out-of-range and batch-of-one inputs are clipped / squeezed on save
    images.save_image(tmp_path / "y.png", pixels[None] * 2 - 100)
    np.testing.assert_array_equal(
        images.load_image(tmp_path / "y.png"), np.clip(pixels * 2 - 100, 0, 255)
    )


def test_gray_rgba_palette_and_16bit_inputs(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    loaded = images.load_image(tmp_path / "gray.png")
    assert loaded.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(loaded[..., c], gray)

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent → white background
    rgba[1, :] = (0, 0, 0, 128)  # half-transparent black → mid gray
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    loaded = images.load_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(loaded[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(loaded[0, 1], [255, 255, 255])
    assert np.all(np.abs(loaded[1] - 127) <= 1)

    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "pal.png")
    assert images.load_image(tmp_path / "pal.png").shape == (2, 2, 3)

    sixteen = np.arange(6, dtype=np.uint16).reshape(2, 3) * 13107  # 0 … 65535
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    loaded = images.load_image(tmp_path / "deep.png")
    np.testing.assert_allclose(loaded[..., 0], sixteen / 257.0, atol=1e-3)


def test_missing_unreadable_and_directory_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*nope.png"):
        images.load_image(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("this is not a PNG")
    with pytest.raises(ValueError, match="cannot read .*text.png"):
        images.load_image(tmp_path / "text.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read .*cut.png"):
        images.load_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="directory"):
        images.load_image(tmp_path)


def test_fit_max_side_keeps_aspect():
    image = np.zeros((300, 451, 3), np.float32)
    assert images.fit_max_side(image, 128).shape == (85, 128, 3)
    assert images.fit_max_side(image, 451).shape == image.shape


# ---------------------------------------------------------------------------------------------------- loop


def _counting_step(carry, consts):
    x, n = carry
    x = x * consts["decay"] + 1.0
    return (x, n + 1), {"x0": x[0], "n": n + 1}


@pytest.mark.parametrize("inner", ["scan", "python", "unrolled"])
def test_chunked_loop_runs_exact_steps_and_compiles_once(inner):
    loop = core.ChunkedLoop(_counting_step, chunk_size=4, desc="count", inner=inner)
    consts = {"decay": jnp.float32(0.5)}
    carry = (jnp.zeros((3,), jnp.float32), jnp.int32(0))
    carry, history = loop.run(carry, consts, 10, progress=False)  # 4 + 4 + 2 (masked) steps
    assert int(carry[1]) == 10
    assert history["n"].tolist() == list(range(1, 11))
    want, x = [], 0.0
    for _ in range(10):
        x = 0.5 * x + 1.0
        want.append(x)
    np.testing.assert_allclose(history["x0"], want, rtol=1e-6)
    assert loop.trace_count == 1
    # Same shapes again: no new trace. Different shapes: exactly one more.
    loop.run((jnp.ones((3,), jnp.float32), jnp.int32(0)), consts, 5, progress=False)
    assert loop.trace_count == 1
    loop.run((jnp.ones((5,), jnp.float32), jnp.int32(0)), consts, 3, progress=False)
    assert loop.trace_count == 2


def test_chunked_loop_zero_steps_and_bad_arguments():
    loop = core.ChunkedLoop(_counting_step, chunk_size=2)
    carry, history = loop.run(
        (jnp.zeros((2,)), jnp.int32(0)), {"decay": jnp.float32(1)}, 0, progress=False
    )
    assert int(carry[1]) == 0 and history == {}
    with pytest.raises(ValueError):
        core.ChunkedLoop(_counting_step, chunk_size=0)
    with pytest.raises(ValueError, match="inner"):
        core.ChunkedLoop(_counting_step, inner="while")
    # "auto": lax.scan on accelerators, the caller's `cpu_inner` on the CPU (see ChunkedLoop's docstring).
    on_cpu = jax.default_backend() == "cpu"
    assert core.ChunkedLoop(_counting_step).inner == "scan"
    assert core.ChunkedLoop(_counting_step, cpu_inner="python").inner == (
        "python" if on_cpu else "scan"
    )


def test_memory_budget_is_enforced_before_running():
    loop = core.ChunkedLoop(_counting_step, chunk_size=2, desc="tiny", memory_budget=8)
    with pytest.raises(core.MemoryBudgetExceeded, match="tiny step needs about"):
        loop.run((jnp.zeros((1000,)), jnp.int32(0)), {"decay": jnp.float32(1)}, 2, progress=False)
    assert core.memory_budget_bytes() > 2**20


def test_chunked_loop_follows_the_default_device_not_the_default_backend(monkeypatch):
    """On a GPU host (simulated) a loop built under `jax.default_device(cpu)` takes the CPU loop."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert core.ChunkedLoop(_counting_step, cpu_inner="python").inner == "scan"
    with jax.default_device(jax.devices("cpu")[0]):
        assert core.ChunkedLoop(_counting_step, cpu_inner="python").inner == "python"
