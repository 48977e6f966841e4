"""scripts/sweep.py's parts: members (configs, names, commands), record (sweep.json), runner
(local subprocesses), slurm (job arrays) and summary (tables and plot)."""
