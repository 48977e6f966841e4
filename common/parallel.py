"""Data parallelism: one `Mesh` with a 'data' axis over every device, `jax.jit` partitions the rest.

The batch axis is sharded over all devices (of all processes); parameters and optimizer state are
replicated. There is no pmap: the same jitted step runs on 1 CPU, 8 GPUs or a multi-host TPU pod.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from common.config import ConfigError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over every device of every process (or the given ones), in process-major order.

  Axis type Auto: XLA's partitioner propagates shardings from the inputs, so model code carries
  no sharding annotations.
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the 'data' axis, other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch(global_batch: int, mesh: Mesh, what: str = "batch_size") -> int:
  """Returns the per-device batch, or stops with a clear error if devices don't divide the batch."""
  n = mesh.size
  if global_batch % n:
    raise ConfigError(
        f"config.{what}={global_batch} is not divisible by the {n} devices of the mesh; "
        f"choose a multiple of {n} (e.g. {max(n, global_batch // n * n)}).")
  return global_batch // n


def global_array(mesh: Mesh, local: np.ndarray, global_shape) -> jax.Array:
  """Builds the global array sharded on axis 0 from this process's rows (multi-host ready)."""
  return jax.make_array_from_process_local_data(sharded(mesh), local, tuple(global_shape))


def replicate(mesh: Mesh, tree):
  """Places a pytree of host values on every device."""
  return jax.device_put(tree, replicated(mesh))
