"""The transfer recipe and the `run:` weight source, end to end on a tiny CaffeNet run.

Yosinski et al.'s protocol: layers 1..n come bitwise from the source run, the layers above are the
fresh seeded init a scratch run of the same seed starts from; frozen copies (AnB/BnB) stay bitwise
unchanged through training and own no optimizer state, fine-tuned copies (AnB+/BnB+) move.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from fixtures import make_image_folder, tiny_config

from tljax import models, optim, weights
from tljax.errors import ConfigError, UserError
from tljax.train import Checkpointer, setup, train_and_evaluate
from tljax.weights.runs import RunNotFinishedError

CLASSES = 4
SIZE = 16


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data root, workdir) of a finished 6-step CaffeNet run from scratch."""
    root = make_image_folder(tmp_path_factory.mktemp("data"))
    workdir = tmp_path_factory.mktemp("runs") / "source"
    train_and_evaluate(tiny_config(root, model="caffenet", steps=6), workdir)
    return root, workdir


def transfer_config(root: Path, source: Path, *, n: int, mode: str, seed: int = 1, steps: int = 4):
    config = tiny_config(root, model="caffenet", recipe="transfer", steps=steps)
    config.seed = seed
    config.weights.name = f"run:{source}"
    config.weights.preprocessing = None  # taken from the source run's config
    config.transfer.layers = n
    config.transfer.mode = mode
    config.transfer.lr_mult = 0.5
    return config


def _modules(variables, names) -> dict:
    return {
        (collection, name): tree[name]
        for collection, tree in variables.items()
        for name in names
        if name in tree
    }


def _bitwise_equal(a, b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def test_first_n_layers_come_from_the_source_and_the_rest_from_a_fresh_seeded_init(source_run):
    root, source = source_run
    config = transfer_config(root, source, n=3, mode="frozen")
    model = setup.build_model(config, CLASSES)
    copied, above = (
        [m for layer in model.layers()[:3] for m in layer],
        [m for layer in model.layers()[3:] for m in layer],
    )
    variables = setup.init_variables(config, model, SIZE)
    source_variables = weights.load(f"run:{source}", model)
    scratch = tiny_config(root, model="caffenet")
    scratch.seed = 1
    fresh = setup.init_variables(scratch, model, SIZE)
    assert _bitwise_equal(_modules(variables, copied), _modules(source_variables, copied))
    assert _bitwise_equal(_modules(variables, above), _modules(fresh, above))
    # Non-vacuous: the source trained away from its init, and seed 1's init is not the source's.
    assert not _bitwise_equal(_modules(fresh, copied), _modules(source_variables, copied))
    assert not _bitwise_equal(_modules(fresh, above), _modules(source_variables, above))


def test_frozen_copies_stay_bitwise_unchanged_and_finetuned_copies_move(source_run, tmp_path):
    root, source = source_run
    model = models.get("caffenet", num_classes=CLASSES)
    copied = [m for layer in model.layers()[:2] for m in layer]
    above = [m for layer in model.layers()[2:] for m in layer]
    source_variables = weights.load(f"run:{source}", model)
    finals = {}
    for mode in ("frozen", "finetune"):
        workdir = tmp_path / mode
        results = train_and_evaluate(transfer_config(root, source, n=2, mode=mode), workdir)
        finals[mode] = weights.load(f"run:{workdir}", model)
        params_in_copied = sum(
            int(np.size(x)) for x in jax.tree.leaves(_modules(source_variables, copied))
        )
        assert results["frozen_params"] == (params_in_copied if mode == "frozen" else 0)
        assert results["class_names"] == sorted(["red", "green", "blue", "gray"])
        # Upper layers always train.
        assert not _bitwise_equal(_modules(finals[mode], above), _modules(source_variables, above))
    assert _bitwise_equal(_modules(finals["frozen"], copied), _modules(source_variables, copied))
    assert not _bitwise_equal(
        _modules(finals["finetune"], copied), _modules(source_variables, copied)
    )
    # The frozen copies own no optimizer state in the run's last checkpoint.
    config = transfer_config(root, source, n=2, mode="frozen")
    assignment = optim.assign_groups(source_variables["params"], setup.param_rules(config, model))
    frozen_state = Checkpointer(tmp_path / "frozen").read_state()["opt_state"]
    assert optim.frozen_state_leaves(frozen_state, assignment) == []
    # Non-vacuous: the fine-tuned run's state does hold moments for those same parameters.
    finetune_state = Checkpointer(tmp_path / "finetune").read_state()["opt_state"]
    assert (
        len(optim.frozen_state_leaves(finetune_state, assignment)) == 2 * 2
    )  # conv1/2 kernel+bias
    assert optim.state_size(frozen_state) < optim.state_size(finetune_state)


def test_best_checkpoint_and_strict_checks(source_run, tmp_path):
    root, source = source_run
    model = models.get("caffenet", num_classes=CLASSES)
    best = weights.load(f"run:{source}#best", model)
    checkpointer = Checkpointer(source)
    assert _bitwise_equal(best, checkpointer.restore_best(best))
    checkpointer.close()
    # A model that does not fit: refused by name, except what `skip` re-initialises.
    with pytest.raises(weights.WeightMismatchError, match=r"classifier/kernel: file \(128, 4\)"):
        weights.load(f"run:{source}", models.get("caffenet", num_classes=3))
    loaded = weights.load(
        f"run:{source}", models.get("caffenet", num_classes=3), skip=(r"classifier/.*",)
    )
    assert loaded["params"]["classifier"]["kernel"].shape == (128, 3)
    with pytest.raises(weights.WeightMismatchError, match="missing keys"):
        weights.load(f"run:{source}", models.get("caffenet", num_classes=4, batch_norm=True))


def test_unfinished_or_missing_runs_are_one_clear_error(source_run, tmp_path):
    root, source = source_run
    with pytest.raises(RunNotFinishedError, match=f"{tmp_path}/nowhere does not exist"):
        weights.load(f"run:{tmp_path}/nowhere")
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "config.json").write_text("{}")
    with pytest.raises(RunNotFinishedError, match="has not finished .no results.json.*resumes it"):
        weights.load(f"run:{tmp_path}/started")
    assert issubclass(RunNotFinishedError, UserError)
    with pytest.raises(UserError, match="unknown checkpoint 'last'"):
        weights.load(f"run:{source}#last")
    # The transfer recipe refuses an n the model does not have, listing the layers.
    config = transfer_config(root, source, n=9, mode="frozen")
    model = setup.build_model(config, CLASSES)
    with pytest.raises(
        ConfigError, match=r"transfer.layers=9: the model has 8 layers.*conv1, conv2"
    ):
        setup.init_variables(config, model, SIZE)


def test_bn_statistics_follow_the_copied_layers_policy():
    model = models.get("caffenet", num_classes=CLASSES, batch_norm=True)
    variables = jax.eval_shape(model.init, jax.random.key(0), jax.numpy.zeros((1, SIZE, SIZE, 3)))
    paths = optim.bn_module_paths(variables["batch_stats"])
    for mode, expected in (("frozen", {"bn1": "frozen", "bn2": "frozen"}), ("finetune", {})):
        rules = optim.recipe_rules(
            "transfer", model.stages(), layers=model.layers(), transfer_layers=2, transfer_mode=mode
        )
        assignment = optim.assign_groups(variables["params"], rules)
        decisions = optim.resolve_bn_policy(paths, None, assignment)
        assert decisions == {p: expected.get(p, "update") for p in paths}
