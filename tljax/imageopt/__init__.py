"""Optimising the input image of a fixed network: style transfer, DeepDream, feature visualisation,
and Zeiler–Fergus top-9 patches. One module per concept:

* shared: `objective` (taps → activations, preprocessing inside), `core` (the chunked, compiled
  optimisation loop and memory checks), `images` (files through the one decoder, atomic writes),
  `backbone` (a headless model, its weights and preprocessing), `inputs` (image streams and the offline
  photos), `render` (the one grid renderer), `tiling`, `receptive_field`, `cli` (the CLIs' config flags).
* techniques, each with a documented `default_config()` and `run_from_config(config)`:
  `style` (`python -m tljax.style`), `dream` (`python -m tljax.dream`), `featvis` and `topk_patches`
  (`python -m tljax.visualize`). Per-backbone values live in `configs/{style,dream,featvis,top9}_*.py`.

Submodules are imported on use (`from tljax.imageopt import style`), so importing the package is cheap.
"""
