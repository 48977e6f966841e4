"""One code path for any device count: 1 and 8 (simulated CPU) devices agree on the same batch."""

import textwrap

from conftest import run_module

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from common import parallel
    from common.data import datasets
    from cnn import train
    from configs import cnn_seed

    assert jax.device_count() == 8
    config = cnn_seed.get_config("test")
    info, host = datasets.load_host(config)
    images, labels = host["train"].images[:128], host["train"].labels[:128]
    batch = {"image": images[None], "label": labels[None]}

    def run(devices):
        mesh = parallel.make_mesh(devices)
        model = train.build_model(config.model, info, jnp.float32, jax.random.PRNGKey(0))
        tx = train.optim.make(config.optimizer, 100)
        task = train.make_task(model, tx, dtype=config.dtype)
        state = parallel.replicate(mesh, task.init(jax.random.PRNGKey(0)))
        b = jax.device_put(batch, jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec(None, parallel.DATA_AXIS)))
        step = jax.jit(task.train_step, donate_argnums=0)
        for i in range(3):
            state, metrics = step(state, b, jax.random.PRNGKey(i))
        assert len(state.params["layers"][0]["conv"]["kernel"].sharding.device_set) == len(devices)
        return jax.device_get(state.params), float(metrics["loss"])

    p1, l1 = run(jax.devices()[:1])
    p8, l8 = run(jax.devices())
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert abs(l1 - l8) < 1e-5
    try:
        parallel.check_batch(100, parallel.make_mesh())
        raise SystemExit("no error for a batch of 100 on 8 devices")
    except parallel.ConfigError as e:
        assert "config.batch_size=100 is not divisible by the 8 devices" in str(e)
    print("SHARDING_OK")
""")


def test_one_and_eight_devices_give_the_same_parameters(tfds_dir):
  r = run_module(["-c", SCRIPT], env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert r.returncode == 0 and "SHARDING_OK" in r.stdout, r.stderr[-3000:]


def test_main_runs_on_eight_devices(tfds_dir, tmp_path):
  r = run_module(["-m", "cnn.main", "--config=configs/cnn_seed.py:test", "--config.num_epochs=1",
                  f"--workdir={tmp_path}"],
                 env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Epoch 1/1 - 16/16" in r.stdout
