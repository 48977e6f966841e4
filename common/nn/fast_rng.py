"""JAX's threefry random bits lowered unrolled on XLA:CPU: the same bits, about 3x faster.

Why this exists: JAX lowers threefry2x32 on CPU as a rolled 5-iteration while loop, and XLA:CPU
runs it with a copy of the loop state per iteration: the course CNN's two dropout masks took
0.7-1.1 ms of its 3.8 ms step. The unrolled form, JAX's rule on every other backend, fuses into
elementwise kernels. It uses JAX internals, so a JAX that moves them keeps its own (slower) rule.
"""

import logging


def use_unrolled_threefry() -> bool:
  """Registers JAX's unrolled threefry lowering for CPU; False (and a warning) if it can't."""
  try:
    from jax._src.random import threefry2x32 as threefry  # pylint: disable=g-import-not-at-top
    from jax.interpreters import mlir  # pylint: disable=g-import-not-at-top
    mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_lowering_rule,  # pylint: disable=protected-access
                           platform="cpu")
  except (ImportError, AttributeError) as e:
    logging.warning("Random bits on CPU use JAX's default (slower) threefry lowering: %s", e)
    return False
  return True
