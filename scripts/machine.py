"""The machine a benchmark ran on: the CPU's model and flags, and the device's measured matmul
rate and memory bandwidth (the standard every benchmark reports beside its numbers)."""

import platform
import time

import jax
import jax.numpy as jnp


CPU_FLAGS = ("avx2", "avx512f", "amx_tile", "amx_bf16")


def cpu_info() -> dict:
  """The host CPU: /proc/cpuinfo's model name (else platform.processor()) and its speed-relevant
  instruction-set flags (False where /proc/cpuinfo is missing)."""
  model, flag_set = "", set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
          model = value.strip()
        elif key in ("flags", "Features") and not flag_set:
          flag_set = set(value.split())
        if model and flag_set:
          break
  except OSError:
    pass
  return {"cpu_model": model or platform.processor() or platform.machine(),
          "cpu_flags": {f: f in flag_set for f in CPU_FLAGS}}


def device_limits() -> dict:
  """This device's measured matmul rate (FLOP/s; bfloat16 8192-cube on accelerators, float32
  2048-cube on CPU) and memory bandwidth (bytes/s, a copy counted as read plus write): the
  denominators of the epoch's fraction of the physical limit."""
  cpu = jax.default_backend() == "cpu"
  n, copy_mib, dtype = (2048, 256, jnp.float32) if cpu else (8192, 2048, jnp.bfloat16)
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  mm = jax.jit(lambda x: x @ x)
  x = jnp.ones((copy_mib * 2**20 // 4,), jnp.float32)
  cp = jax.jit(lambda v: v + 1.0)

  def best(f, arg, reps=10):
    jax.block_until_ready(f(arg))
    t = []
    for _ in range(reps):
      t0 = time.perf_counter()
      jax.block_until_ready(f(arg))
      t.append(time.perf_counter() - t0)
    return min(t)

  return {"matmul_flops_per_s": 2 * n**3 / best(mm, a), "matmul": f"{n}-cube {dtype.dtype.name}",
          "bytes_per_s": 2 * x.nbytes / best(cp, x)}
