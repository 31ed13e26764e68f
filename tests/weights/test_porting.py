"""Name tables and the strict loader: every key accounted for, mismatches named, partial loads explicit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import tljax.models as models
from tljax import weights
from tljax.errors import UserError
from tljax.weights import convert
from tljax.weights.porting import WeightMismatchError, name_table, port_state_dict


def _state_dict(name: str, **kwargs) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def resnet18_sd():
    return _state_dict("resnet18")


def test_every_torchvision_key_has_exactly_one_flax_home(resnet18_sd):
    table = name_table(models.get("resnet18"))
    sources = [e.source for e in table]
    assert len(sources) == len(set(sources))
    weights_keys = {k for k in resnet18_sd if not k.endswith("num_batches_tracked")}
    assert set(sources) == weights_keys


def test_conv_and_dense_layouts(resnet18_sd):
    variables, report = port_state_dict(resnet18_sd, models.get("resnet18"))
    np.testing.assert_array_equal(
        variables["params"]["conv1"]["kernel"], resnet18_sd["conv1.weight"].transpose(2, 3, 1, 0)
    )  # OIHW → HWIO
    np.testing.assert_array_equal(
        variables["params"]["classifier"]["kernel"], resnet18_sd["fc.weight"].T
    )
    np.testing.assert_array_equal(
        variables["batch_stats"]["layer2_0"]["downsample_bn"]["var"],
        resnet18_sd["layer2.0.downsample.1.running_var"],
    )
    assert not report.skipped_targets


def test_vgg_fc6_is_reordered_from_nchw_to_nhwc_flatten():
    sd = _state_dict("vgg11")
    variables, _ = port_state_dict(sd, models.get("vgg11"))
    x = np.random.default_rng(0).standard_normal((512, 7, 7)).astype(np.float32)  # C, H, W
    torch_out = sd["classifier.0.weight"] @ x.reshape(-1)  # torchvision flattens C,H,W
    ours = x.transpose(1, 2, 0).reshape(-1) @ np.asarray(variables["params"]["fc6"]["kernel"])
    np.testing.assert_allclose(ours, torch_out, rtol=1e-4, atol=1e-4)


def test_wrong_architecture_names_missing_and_unexpected_keys(resnet18_sd):
    with pytest.raises(WeightMismatchError) as err:
        port_state_dict(resnet18_sd, models.get("resnet34"))
    message = str(err.value)
    assert "missing keys" in message and "layer1.2.conv1.weight" in message
    with pytest.raises(WeightMismatchError, match=r"unexpected keys \(1\):\s+extra.weight"):
        port_state_dict({**resnet18_sd, "extra.weight": np.zeros(3)}, models.get("resnet18"))


def test_new_head_needs_an_explicit_skip_and_names_what_it_skipped():
    sd = _state_dict("resnet18", num_classes=10)
    model = models.get("resnet18")  # 1000 classes
    with pytest.raises(
        WeightMismatchError, match=r"fc.weight: file \(512, 10\) vs model \(512, 1000\)"
    ):
        port_state_dict(sd, model)
    init = jax.jit(model.init)(jax.random.key(7), jnp.zeros((1, 64, 64, 3)))
    variables, report = port_state_dict(sd, model, skip=(r"classifier/.*",), init_variables=init)
    assert sorted(report.skipped_targets) == ["classifier/bias", "classifier/kernel"]
    assert sorted(report.skipped_sources) == ["fc.bias", "fc.weight"]
    np.testing.assert_array_equal(
        variables["params"]["classifier"]["kernel"], init["params"]["classifier"]["kernel"]
    )
    np.testing.assert_array_equal(
        variables["params"]["layer4_1"]["conv2"]["kernel"],
        sd["layer4.1.conv2.weight"].transpose(2, 3, 1, 0),
    )


def test_backbone_without_top_loads_from_a_full_file_and_names_the_dropped_head(resnet18_sd):
    variables, report = port_state_dict(resnet18_sd, models.get("resnet18", include_top=False))
    assert "classifier" not in variables["params"]
    assert sorted(report.skipped_sources) == ["fc.bias", "fc.weight"]
    without_fc = {k: v for k, v in resnet18_sd.items() if not k.startswith("fc.")}
    _, report = port_state_dict(without_fc, models.get("resnet18", include_top=False))
    assert report.skipped_sources == []
    with pytest.raises(WeightMismatchError, match=r"missing keys \(2\):\s+fc.weight"):
        port_state_dict(without_fc, models.get("resnet18"))


@pytest.mark.parametrize(
    "name,expected",
    [
        ("resnet18", "resnet18"),
        ("resnet50", "resnet50"),
        ("vgg11_bn", "vgg11_bn"),
        ("vgg13", "vgg13"),
        ("mobilenet_v2", "mobilenet_v2"),
        ("mobilenet_v3_large", "mobilenet_v3_large"),
        ("mobilenet_v3_small", "mobilenet_v3_small"),
        ("googlenet", "googlenet"),
        ("inception_v3", "inception_v3"),
    ],
)
def test_architecture_is_inferred_from_the_file(name, expected):
    assert weights.infer_architecture(_state_dict(name)) == expected


def test_lite0_architecture_is_inferred():
    assert (
        weights.infer_architecture(weights.read_state_dict(weights.resolve("efficientnet_lite0")))
        == "efficientnet_lite0"
    )


def test_load_from_a_user_pth_file_and_via_convert(tmp_path, resnet18_sd):
    path = tmp_path / "resnet18-mine.pth"
    torch.save({k: torch.from_numpy(v) for k, v in resnet18_sd.items()}, path)
    from_file = weights.load(path)  # architecture inferred, no torch at load time
    expected, _ = port_state_dict(resnet18_sd, models.get("resnet18"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, from_file, expected)

    out = convert(str(path), str(tmp_path / "flax"))
    converted = weights.load(out)
    jax.tree_util.tree_map(np.testing.assert_array_equal, converted, expected)
    with pytest.raises(WeightMismatchError, match="mis-shaped"):
        weights.load(out, models.get("resnet18", num_classes=10))
    head = weights.load(out, models.get("resnet18", num_classes=10), skip=(r"classifier/.*",))
    assert head["params"]["classifier"]["kernel"].shape == (512, 10)
    with pytest.raises(FileExistsError):
        convert(str(path), str(out))


def test_registry_architectures_exist():
    for name in weights.list_weights():
        assert weights.get_spec(name).arch in models.list_models(), name


def test_wrong_rank_is_a_mismatch_named_before_any_transpose(resnet18_sd):
    # A conv kernel saved flattened and a dense weight saved as a vector: numpy's transpose used to fail
    # with "axes don't match array" before the shape check could name the keys.
    bad = {
        **resnet18_sd,
        "conv1.weight": resnet18_sd["conv1.weight"].reshape(64, -1),
        "fc.weight": resnet18_sd["fc.weight"].reshape(-1),
    }
    with pytest.raises(WeightMismatchError) as err:
        port_state_dict(bad, models.get("resnet18"))
    message = str(err.value)
    assert "mis-shaped keys (2)" in message
    assert "conv1.weight: file (64, 147) vs model (64, 3, 7, 7) in PyTorch layout" in message
    assert "fc.weight: file (512000,) vs model (1000, 512) in PyTorch layout" in message
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)


def test_unusable_files_and_folders_are_user_errors(tmp_path):
    # A folder that is not a converted-weights folder, and a state dict of no known architecture.
    (tmp_path / "not_converted").mkdir()
    with pytest.raises(weights.WeightFileError, match="not a tljax converted-weights directory"):
        weights.load(tmp_path / "not_converted")
    path = tmp_path / "tiny.pth"
    torch.save({"a": torch.ones(3), "_conv_stem.weight": torch.ones(2)}, path)
    with pytest.raises(WeightMismatchError, match="unrecognised EfficientNet-Lite layout"):
        weights.load(path)
    torch.save({"a": torch.ones(3)}, path)
    with pytest.raises(WeightMismatchError, match="cannot tell which architecture.*--model"):
        weights.load(path)


def test_a_file_of_another_architecture_is_named(tmp_path, resnet18_sd):
    path = tmp_path / "r18.pth"
    torch.save({k: torch.from_numpy(v) for k, v in resnet18_sd.items()}, path)
    for model in (models.get("efficientnet_lite0"), models.get("resnet34")):
        with pytest.raises(WeightMismatchError) as err:
            weights.load(path, model)
        message = str(err.value)
        assert message.startswith(f"{path} holds resnet18 weights"), message[:200]
        assert "--model=resnet18" in message and "missing keys" in message
    # Same architecture, another head: no hint, the mis-shaped head is the whole story.
    with pytest.raises(WeightMismatchError, match=r"^weight file does not fit ResNet") as err:
        weights.load(path, models.get("resnet18", num_classes=10))


def test_porting_compiles_no_program_per_tensor(resnet18_sd, caplog):
    # jnp.asarray of a NumPy array compiles a small XLA program per shape (about 50 ms each on CPU,
    # 30 s of a Lite0 run's start-up under load); the port hands the tree to the device in one
    # device_put instead, so a 62-tensor ResNet-18 port compiles nothing per tensor.
    model = models.get("resnet18")
    jax.clear_caches()  # programs compiled by earlier tests in this process would hide it
    caplog.set_level("WARNING")
    with jax.log_compiles(True):
        variables, _ = port_state_dict(resnet18_sd, model)
    messages = [r.getMessage() for r in caplog.records]
    per_tensor = [m for m in messages if "Compiling" in m and "float32[" in m]
    assert per_tensor == []  # (making the default key compiles its 3 tiny programs, once)
    assert isinstance(variables["params"]["conv1"]["kernel"], jax.Array)
