"""The config options `common` owns: the run, the data, the loop, and an optimizer block.

Imports only common.config (no JAX), so config files can build on these.
"""

from common.config import TEXT, Option, choice, integer, number

OPTIMIZERS = ("adam", "adamw", "adadelta", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")

RUN = {
    "name": Option("run", TEXT, "the run's name; the workdir defaults to runs/<name>"),
    "seed": Option(0, integer(0), "seed of the run's key: init, shuffles and every step's key"),
    "dataset": Option("mnist", TEXT, "a TFDS image dataset name (e.g. fashion_mnist, cifar10, "
                   "emnist/balanced) or mnist1d"),
    "data_dir": Option("", TEXT, "TFDS data_dir; default $TFDS_DATA_DIR or ~/tensorflow_datasets",
                    resumable=True),
    "manual_dir": Option("", TEXT, "folder of the dataset's original files for offline preparation; "
                      "default $TFDS_MANUAL_DIR", resumable=True),
    "validation_split": Option(0.0, number(0.0, 1.0, open_hi=True),
                            "last fraction of the training split held out, as Keras does"),
    "train_examples": Option(0, integer(0), "use only the first N training examples (0: all)"),
    "data_placement": Option("auto", choice("auto", "device", "host", "disk"),
                          "training split on the devices, streamed from host memory, read from "
                          "disk by index (TFDS array_record, with grain), or chosen by size",
                          resumable=True),
    "read_threads": Option(16, integer(1), "data_placement=disk: grain threads reading examples",
                        resumable=True),
    "read_workers": Option(0, integer(0), "data_placement=disk: grain worker processes, each "
                        "with read_threads threads (0: threads in the training process)",
                        resumable=True),
    "read_prefetch_steps": Option(32, integer(1), "data_placement=disk: steps of examples read "
                               "ahead (host memory: this many batches)", resumable=True),
    "batch_size": Option(128, integer(1), "global batch, split over every device"),
    "eval_batch_size": Option(1000, integer(1), "global batch for evaluation passes"),
    "num_epochs": Option(1, integer(1), "epochs to train", resumable=True),
    "steps_per_call": Option(0, integer(0), "steps per host round trip; 0: a whole epoch (1/30 of "
                          "one on a terminal)", resumable=True),
    "eval_every_epochs": Option(1, integer(1), "epochs between evaluations", resumable=True),
    "checkpoint_every_epochs": Option(1, integer(1), "epochs between checkpoints", resumable=True),
    "max_checkpoints": Option(3, integer(1), "checkpoints kept", resumable=True),
    "best_metric": Option("", TEXT, "also keep the checkpoint with the best value of this epoch "
                       "metric (e.g. val_accuracy, eval_fid); '' for none", resumable=True),
    "best_mode": Option("min", choice("min", "max"), "whether lower or higher best_metric is better",
                     resumable=True),
    "dtype": Option("float32", choice("float32", "bfloat16"),
                 "compute dtype; parameters and optimizer state stay float32"),
    "progress_bar": Option("auto", choice("auto", "on", "off"), "progress inside epochs: a bar on "
                        "a terminal, a line every 30 s in a log file (auto), or none", resumable=True),
    "wandb_project": Option("", TEXT, "also log scalars, sample grids and the config to this Weights "
                         "& Biases project ('' off; pip install -e '.[wandb]'; WANDB_MODE=offline "
                         "works)", resumable=True),
}


OPTIMIZER_DEFAULTS = dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, rho=0.9,
                          momentum=0.0, weight_decay=0.0, schedule="constant", warmup_fraction=0.0)


def optimizer_values(name: str = "adam", learning_rate: float = 1e-3, **values) -> dict:
  """A whole optimizer block: OPTIMIZER_DEFAULTS with these values, for `c.optimizer.update()`."""
  return dict(OPTIMIZER_DEFAULTS, name=name, learning_rate=learning_rate, **values)


def optimizer(prefix: str, name: str = "adam", learning_rate: float = 1e-3, **values) -> dict:
  """The options of one optax optimizer block under `prefix` (e.g. 'optimizer', 'g_optimizer')."""
  d = optimizer_values(name, learning_rate, **values)
  unit = number(0.0, 1.0, open_hi=True)
  block = {
      "name": Option(d["name"], choice(*OPTIMIZERS), "optax optimizer"),
      "learning_rate": Option(d["learning_rate"], number(0.0, open_lo=True), "peak learning rate"),
      "b1": Option(d["b1"], unit, "adam, adamw: first-moment decay"),
      "b2": Option(d["b2"], unit, "adam, adamw: second-moment decay"),
      "eps": Option(d["eps"], number(0.0), "adam, adamw, adadelta, rmsprop: epsilon"),
      "rho": Option(d["rho"], unit, "adadelta, rmsprop: squared-gradient decay"),
      "momentum": Option(d["momentum"], unit, "sgd, rmsprop: momentum (0: none)"),
      "weight_decay": Option(d["weight_decay"], number(0.0), "adamw: decoupled weight decay"),
      "schedule": Option(d["schedule"], choice(*SCHEDULES),
                      "constant, cosine decay, or onecycle (warmup then cosine)"),
      "warmup_fraction": Option(d["warmup_fraction"], unit, "onecycle: fraction spent warming up"),
  }
  return {f"{prefix}.{k}": v for k, v in block.items()}
