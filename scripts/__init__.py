"""Command-line scripts: sweeps, the TPU launcher, benchmarks."""
