"""PyTorch reference forwards that return the same named taps as the tljax models (test oracle only)."""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from tljax.models.vgg import VGG_STAGES


def randomize_batch_norm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Gives every BN layer non-trivial scale/shift/running statistics, so a port that ignored any of them
    (or recomputed statistics) would fail the comparison."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))


def state_dict_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def torchvision_model(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A torchvision classifier with random (seeded) weights and random BN statistics, in eval mode;
    `kwargs` go to the torchvision constructor (e.g. `transform_input=True`)."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    randomize_batch_norm(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def _capture(store: dict, name: str):
    def hook(_module, _inputs, output):
        store[name] = output.detach().clone()  # clone: torchvision's ReLUs run in place afterwards

    return hook


@torch.no_grad()
def vgg_taps(
    model: torch.nn.Module, depth: int, batch_norm: bool, x: torch.Tensor
) -> dict[str, np.ndarray]:
    taps: dict[str, torch.Tensor] = {}
    handles, index = [], 0
    for stage, widths in enumerate(VGG_STAGES[depth], start=1):
        for i in range(1, len(widths) + 1):
            names = (
                [f"conv{stage}_{i}"]
                + ([f"bn{stage}_{i}"] if batch_norm else [])
                + [f"relu{stage}_{i}"]
            )
            for name in names:
                handles.append(model.features[index].register_forward_hook(_capture(taps, name)))
                index += 1
        handles.append(model.features[index].register_forward_hook(_capture(taps, f"pool{stage}")))
        index += 1
    handles.append(model.avgpool.register_forward_hook(_capture(taps, "avgpool")))
    for idx, name in [(0, "fc6"), (1, "relu6"), (3, "fc7"), (4, "relu7")]:
        handles.append(model.classifier[idx].register_forward_hook(_capture(taps, name)))
    taps["logits"] = model(x)
    for h in handles:
        h.remove()
    taps["pool"] = taps["pool5"].mean(dim=(2, 3))
    return {k: to_nhwc(v) for k, v in taps.items()}


@torch.no_grad()
def resnet_taps(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    taps: dict[str, torch.Tensor] = {}
    handles = [model.maxpool.register_forward_hook(_capture(taps, "stem"))]
    for layer in range(1, 5):
        for b, block in enumerate(getattr(model, f"layer{layer}")):
            handles.append(block.register_forward_hook(_capture(taps, f"layer{layer}.{b}")))
    handles.append(model.avgpool.register_forward_hook(_capture(taps, "pool")))
    taps["logits"] = model(x)
    for h in handles:
        h.remove()
    taps["pool"] = taps["pool"].flatten(1)
    return {k: to_nhwc(v) for k, v in taps.items()}


@torch.no_grad()
def efficientnet_lite_taps(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Taps of the `efficientnet-lite-pytorch` reference, recomputed step by step from its modules."""
    taps: dict[str, torch.Tensor] = {}
    relu6 = torch.nn.functional.relu6
    h = relu6(model._bn0(model._conv_stem(x)))
    taps["stem"] = h
    for i, block in enumerate(model._blocks):
        h = block(h, drop_connect_rate=0.0)
        taps[f"blocks.{i}"] = h
    h = relu6(model._bn1(model._conv_head(h)))
    taps["head"] = h
    taps["pool"] = h.mean(dim=(2, 3))
    taps["logits"] = model(x)
    return {k: to_nhwc(v) for k, v in taps.items()}


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference|: scale-free and well defined where values cross zero."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.max(np.abs(ours - reference)) / max(np.max(np.abs(reference)), 1e-30))


@torch.no_grad()
def features_taps(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Taps of a torchvision model built as `features` (nn.Sequential) → GAP → `classifier`
    (MobileNet V2/V3): `features.{i}` after every entry, `pool`, `logits`."""
    taps: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(_capture(taps, f"features.{i}"))
        for i, m in enumerate(model.features)
    ]
    taps["logits"] = model(x)
    for h in handles:
        h.remove()
    taps["pool"] = taps[f"features.{len(model.features) - 1}"].mean(dim=(2, 3))
    return {k: to_nhwc(v) for k, v in taps.items()}


@torch.no_grad()
def googlenet_taps(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """GoogLeNet's taps by torchvision module (`inception3a` → `inception_3a`); the auxiliary heads,
    which torchvision runs only in training, are applied (in eval mode) to the blocks they read."""
    taps: dict[str, torch.Tensor] = {}
    modules = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "maxpool3", "maxpool4"]
    names = {m: m for m in modules}
    names |= {f"inception{b}": f"inception_{b}" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e")}
    names |= {"inception5a": "inception_5a", "inception5b": "inception_5b", "avgpool": "pool"}
    handles = [getattr(model, m).register_forward_hook(_capture(taps, t)) for m, t in names.items()]
    taps["logits"] = model(x)
    for h in handles:
        h.remove()
    taps["pool"] = taps["pool"].flatten(1)
    if model.aux1 is not None:
        taps["aux1"] = model.aux1(taps["inception_4a"])
        taps["aux2"] = model.aux2(taps["inception_4d"])
    return {k: to_nhwc(v) for k, v in taps.items()}


@torch.no_grad()
def inception_v3_taps(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Inception V3's taps by torchvision module name; the auxiliary head (training-only in
    torchvision) is applied in eval mode to Mixed_6e."""
    taps: dict[str, torch.Tensor] = {}
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1"]
    names += ["Conv2d_4a_3x3", "maxpool2", *(f"Mixed_{b}" for b in ("5b", "5c", "5d"))]
    names += [f"Mixed_{b}" for b in ("6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")]
    handles = [getattr(model, n).register_forward_hook(_capture(taps, n)) for n in names]
    handles.append(model.avgpool.register_forward_hook(_capture(taps, "pool")))
    taps["logits"] = model(x)
    for h in handles:
        h.remove()
    taps["pool"] = taps["pool"].flatten(1)
    if model.AuxLogits is not None:
        taps["aux"] = model.AuxLogits(taps["Mixed_6e"])
    return {k: to_nhwc(v) for k, v in taps.items()}
