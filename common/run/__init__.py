"""A run's life: the training loop, checkpoints and preemption, the workdir lock, run files,
entry points, what it prints and writes."""
