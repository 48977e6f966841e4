"""common.nn.fast_rng: threefry lowered unrolled on CPU gives JAX's bits without a while loop."""

import jax
import numpy as np
from jax._src.random import threefry2x32 as threefry
from jax.interpreters import mlir

import common  # pylint: disable=unused-import  # registers the unrolled rule


def _bits_and_hlo():
  f = jax.jit(lambda k: jax.random.bits(jax.random.fold_in(k, 7), (3, 1000)))
  key = jax.random.PRNGKey(42)
  return np.asarray(f(key)), f.lower(key).compile().as_text()


def test_unrolled_threefry_gives_the_rolled_loops_bits_without_a_loop():
  unrolled, hlo = _bits_and_hlo()
  assert " while(" not in hlo
  mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_cpu_lowering_rule,  # pylint: disable=protected-access
                         platform="cpu")
  try:
    jax.clear_caches()
    rolled, rolled_hlo = _bits_and_hlo()
  finally:
    assert common.nn.fast_rng.use_unrolled_threefry()
    jax.clear_caches()
  assert " while(" in rolled_hlo  # JAX's own CPU rule: the comparison is between the two
  np.testing.assert_array_equal(unrolled, rolled)
  assert len(np.unique(unrolled)) > 2900
