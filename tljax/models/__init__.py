"""tljax model zoo: functional Flax (linen) modules, NHWC, with named intermediate activations ("taps").

    model = tljax.models.get("resnet50", num_classes=10, include_top=True)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    logits = model.apply(variables, images)                               # [B, 10]
    feats = model.apply(variables, images, taps=("layer3.5", "pool"))     # {"layer3.5": ..., "pool": ...}

Tap names (see each architecture's module docstring; list them with `tap_names(model)`):
  * VGG:   conv{s}_{i}, [bn{s}_{i},] relu{s}_{i}, pool{s} (s = 1..5), pool (GAP of pool5), avgpool,
           fc6, relu6, fc7, relu7, logits
  * ResNet: stem, layer{1..4}.{j}, pool, logits
  * EfficientNet-Lite: stem, blocks.{0..N-1}, head, pool, logits
  * MobileNet V2/V3: features.0 (stem), features.{1..N} (inverted residuals), features.{N+1} (head conv),
           pool, logits
  * GoogLeNet: conv1, maxpool1, conv2, conv3, maxpool2, inception_3a … inception_5b (with maxpool3/4
           between), [aux1, aux2 with aux_logits=True], pool, logits
  * Inception V3: Conv2d_1a_3x3 … Conv2d_4a_3x3 with maxpool1/2, Mixed_5b … Mixed_7c, [aux], pool, logits
  * Inception V3 (Keras layout): the same stem, mixed0 … mixed10, pool, logits
  * MobileNet V1: stem, blocks.1 … blocks.13 (Keras' block ids), pool, logits
  * Xception: entry_flow.0 … entry_flow.3, middle_flow.0 … middle_flow.7, exit_flow.0, exit_flow, pool,
           logits
  * CaffeNet-like: conv{i}, [bn{i},] relu{i} (i = 1..5), pool1, pool2, pool5, pool, fc6, relu6, fc7,
           relu7, logits
A forward pass with `taps` stops after the deepest requested tap.

`model.stages()` groups the top-level modules into stages (fine-tune the last k), `model.layers()` into
layers (every conv/dense layer of VGG and CaffeNet, every block of ResNet and EfficientNet-Lite: the unit
of "transfer the first n layers"); both run input → output and cover every parameter exactly once.
"""

from tljax.models import (  # noqa: F401  (registers the architectures)
    caffenet,
    efficientnet_lite,
    googlenet,
    inception_v3,
    mobilenet,
    mobilenet_v1,
    resnet,
    vgg,
    xception,
)
from tljax.models.registry import get, list_models, tap_names

__all__ = ["get", "list_models", "tap_names"]
