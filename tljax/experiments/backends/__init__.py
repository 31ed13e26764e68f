"""Sweep backends: `local` (worker processes on this host), `slurm` (array jobs), `tpu_vm` (gcloud)."""
