"""Transferability sweeps: a sweep file's phases of points, each an ordinary `train_and_evaluate` run in
its own process and its own readable workdir, launched locally, on SLURM or on TPU VMs, and reported.

Modules: `spec` (axes, phases, expansion, point configs), `naming` (point names, workdirs), `state`
(a point's state from its workdir), `point` (runs one point), `runner` (the checked plan, commands,
summary, progress), `report` (results.csv, mean ± std table, plot hook), `backends.{local,slurm,tpu_vm}`;
`transfer_figures` draws Yosinski's Fig. 2 from report rows. The CLI is `python -m tljax.sweep`.
"""

from tljax.experiments.spec import Phase, Sweep, axis, product, seeds, zip_axes

__all__ = ["Phase", "Sweep", "axis", "product", "seeds", "zip_axes"]
