"""Keras 3 (TensorFlow backend) peer benchmark: steady-state CPU training throughput.

Trains the same models as the JAX code so their throughput can be compared as a
ratio measured in the same run on the same machine.

  cnn_seed  The course's Keras CNN (27,320 params): Conv2D(16,3,relu) -> MaxPool(2)
            -> Dropout(.25) -> Flatten -> Dense(10,relu) -> Dropout(.5)
            -> Dense(10,softmax); categorical cross-entropy; Adadelta(1.0, .95, 1e-7);
            batch 128 on the first 48,000 MNIST training images (the 80% that
            validation_split=0.2 keeps; no validation pass is run), shuffled each
            epoch, pixels /255. Trained with model.fit on in-memory numpy arrays.
            Variants: `fit` (jit_compile=False, the CPU default) and `fit_jit`
            (jit_compile=True, XLA). Epoch 1 is warm-up; the median of the
            remaining epoch times is reported.
  acgan     The Keras MNIST ACGAN example. One step = one discriminator update on
            100 real + 100 generated images (aux-class loss weighted 2 on real, 0 on
            fake, labels soft_one=0.95, as in the example) and one generator update
            through the frozen discriminator on --gen_batch fresh noise samples
            (200 = 2*100 as in the example by default). Adam(2e-4, beta_1=0.5).
            Variants: `train_on_batch` (generator.predict_on_batch +
            discriminator/combined train_on_batch, as the example) and
            `tf_function` (both updates in one custom @tf.function train step;
            opt-in `tf_function_jit` adds jit_compile=True). The first --warmup steps are
            excluded; throughput is the total over the --steps timed steps, in real
            images/s (100 per step).

With --variant=all (the default) fit,fit_jit resp. train_on_batch,tf_function are
timed and the fastest is reported; all timed variants are in the JSON under "variants".
--variant=eager is the default Keras setting (jit_compile=False: fit resp. the faster of
train_on_batch and tf_function), --variant=compiled (or --jit_compile) the XLA one
(jit_compile=True: fit_jit resp. tf_function_jit). If jit_compile=True fails on this machine,
the run falls back to its jit_compile=False counterpart and says so in the JSON ("fallback",
"jit_compile_error") and on stderr, instead of crashing.

Compile time is reported separately: compile_s is what the first epoch (cnn_seed) or the
--warmup steps (acgan) took beyond their steady-state time (tracing, XLA compilation and
warm-up), first_step_s the first step alone.

Run (from the repo root, in the peers venv):
  /work/venv-peers/bin/python scripts/peers/keras_peer.py --model=cnn_seed --epochs=3 --json
  /work/venv-peers/bin/python scripts/peers/keras_peer.py --model=cnn_seed --epochs=3 --jit_compile --json
  /work/venv-peers/bin/python scripts/peers/keras_peer.py --model=acgan --warmup=5 --steps=30 --json
Prints exactly one JSON line on stdout with --json (logs go to stderr). Besides wall
time it reports cpu_ms_per_step (this process's CPU time, all threads, per step): if
it is well below threads * ms_per_step, other processes were competing for the CPU.
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
LATENT = 100
VARIANTS = {"cnn_seed": ["fit", "fit_jit"],
            "acgan": ["train_on_batch", "tf_function", "tf_function_jit"]}
DEFAULT_VARIANTS = {"cnn_seed": ["fit", "fit_jit"], "acgan": ["train_on_batch", "tf_function"]}
ALIASES = {"eager": {"cnn_seed": ["fit"], "acgan": ["train_on_batch", "tf_function"]},
           "compiled": {"cnn_seed": ["fit_jit"], "acgan": ["tf_function_jit"]}}
NO_JIT = {"fit_jit": "fit", "tf_function_jit": "tf_function"}  # the fallback of each XLA variant


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def load_mnist(mnist_dir):
    def read(name, offset):
        with gzip.open(Path(mnist_dir) / name, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    y = read("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return x, y


# ----------------------------------------------------------------- cnn_seed
def cnn_seed_model(jit):
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(16, (3, 3), activation="relu"),
        layers.MaxPooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(10, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    assert model.count_params() == 27320, model.count_params()
    model.compile(loss="categorical_crossentropy", jit_compile=jit,
                  optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7))
    return model


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times, self.cpu_times, self.first_step, self.loss = [], [], None, None

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def on_train_batch_begin(self, batch, logs=None):
        # The first step (tracing and compiling the train function) has ended when the second
        # begins: Keras reads each step's logs back to Python after it (a sync).
        if batch == 1 and self.first_step is None:
            self.first_step = time.perf_counter() - self.t0
            self.first_cpu = time.process_time() - self.c0

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t0)
        self.cpu_times.append(time.process_time() - self.c0)
        self.loss = float(logs.get("loss", float("nan")))
        log(f"  epoch {epoch + 1}: {self.times[-1]:.2f}s loss={self.loss:.4f}")


def bench_cnn_seed(variant, args, x, y):
    n = 48000
    x = x[:n].astype(np.float32) / 255.0
    y = keras.utils.to_categorical(y[:n], 10)
    model = cnn_seed_model(jit=(variant == "fit_jit"))
    steps = min(args.steps or -(-n // args.batch), -(-n // args.batch))
    n_used = min(n, steps * args.batch)
    timer = EpochTimer()
    model.fit(x[:n_used], y[:n_used], batch_size=args.batch, epochs=args.epochs,
              shuffle=True, verbose=0, callbacks=[timer])
    if timer.first_step is None:  # a one-step epoch
        timer.first_step, timer.first_cpu = timer.times[0], timer.cpu_times[0]
    first = timer.first_step
    if len(timer.times) > 1 or steps == 1:  # epoch 1 is warm-up (or the only timing there is)
        sec = statistics.median(timer.times[1:] or timer.times)
        cpu = statistics.median(timer.cpu_times[1:] or timer.cpu_times)
    else:  # one epoch: its steps after the first, scaled to the epoch
        sec = (timer.times[0] - first) * steps / max(1, steps - 1)
        cpu = (timer.cpu_times[0] - timer.first_cpu) * steps / max(1, steps - 1)
    return {"examples_per_sec": n_used / sec, "ms_per_step": 1000 * sec / steps,
            "cpu_ms_per_step": 1000 * cpu / steps,
            "compile_s": max(0.0, timer.times[0] - sec), "first_step_s": first,
            "batch": args.batch, "steps": steps * max(1, args.epochs - 1),
            "epoch_seconds": [round(t, 3) for t in timer.times], "loss": timer.loss}


# -------------------------------------------------------------------- acgan
def build_generator():
    cnn = keras.Sequential([
        keras.Input((LATENT,)),
        layers.Dense(1024, activation="relu"),
        layers.Dense(128 * 7 * 7, activation="relu"),
        layers.Reshape((7, 7, 128)),
        layers.UpSampling2D(2),
        layers.Conv2D(256, 5, padding="same", activation="relu", kernel_initializer="he_normal"),
        layers.UpSampling2D(2),
        layers.Conv2D(128, 5, padding="same", activation="relu"),
        layers.Conv2D(1, 2, padding="same", activation="tanh"),
    ])
    latent = keras.Input((LATENT,))
    image_class = keras.Input((1,), dtype="int32")
    cls = layers.Flatten()(layers.Embedding(10, LATENT, embeddings_initializer="glorot_normal")(image_class))
    return keras.Model([latent, image_class], cnn(layers.multiply([latent, cls])))


def build_discriminator():
    cnn = keras.Sequential([keras.Input((28, 28, 1))])
    for filters, strides in [(32, 2), (64, 1), (128, 2), (256, 1)]:
        cnn.add(layers.Conv2D(filters, 3, strides=strides, padding="same"))
        cnn.add(layers.LeakyReLU(0.2))
        cnn.add(layers.Dropout(0.3))
    cnn.add(layers.Flatten())
    image = keras.Input((28, 28, 1))
    features = cnn(image)
    fake = layers.Dense(1, activation="sigmoid", name="generation")(features)
    aux = layers.Dense(10, activation="softmax", name="auxiliary")(features)
    return keras.Model(image, [fake, aux])


def adam():
    return keras.optimizers.Adam(learning_rate=2e-4, beta_1=0.5)


def acgan_train_on_batch(args):
    """The example's loop: predict, then discriminator / combined train_on_batch."""
    gen, disc = build_generator(), build_discriminator()
    losses = ["binary_crossentropy", "sparse_categorical_crossentropy"]
    disc.compile(optimizer=adam(), loss=losses)
    latent = keras.Input((LATENT,))
    image_class = keras.Input((1,), dtype="int32")
    disc.trainable = False
    combined = keras.Model([latent, image_class], disc(gen([latent, image_class])))
    combined.compile(optimizer=adam(), loss=losses)
    b, gb = args.batch, args.gen_batch
    y_d = np.array([0.95] * b + [0.0] * b, np.float32)
    w_d = [np.ones(2 * b, np.float32), np.concatenate([np.full(b, 2.0), np.zeros(b)]).astype(np.float32)]
    trick = np.full(gb, 0.95, np.float32)

    def step(x_real, y_real, rng):
        noise = rng.uniform(-1, 1, (b, LATENT)).astype(np.float32)
        sampled = rng.integers(0, 10, b)
        fake = gen.predict_on_batch([noise, sampled.reshape(-1, 1)])
        disc.trainable = True  # train functions are traced once, at their first call
        d_loss = disc.train_on_batch(np.concatenate([x_real, fake]), [y_d, np.concatenate([y_real, sampled])],
                                     sample_weight=w_d)
        disc.trainable = False
        noise = rng.uniform(-1, 1, (gb, LATENT)).astype(np.float32)
        sampled = rng.integers(0, 10, gb)
        g_loss = combined.train_on_batch([noise, sampled.reshape(-1, 1)], [trick, sampled])
        return d_loss, g_loss
    return step


def acgan_tf_function(args, jit):
    """Both updates in one custom tf.function (GradientTape) train step."""
    gen, disc = build_generator(), build_discriminator()
    d_opt, g_opt = adam(), adam()
    d_opt.build(disc.trainable_variables)
    g_opt.build(gen.trainable_variables)
    bce = keras.losses.BinaryCrossentropy()
    sce = keras.losses.SparseCategoricalCrossentropy()
    b, gb = args.batch, args.gen_batch
    y_d = tf.constant([0.95] * b + [0.0] * b, shape=(2 * b, 1))
    w_aux = tf.constant([2.0] * b + [0.0] * b)
    trick = tf.fill((gb, 1), 0.95)

    @tf.function(jit_compile=jit)
    def train_step(x_real, y_real):
        noise = tf.random.uniform((b, LATENT), -1, 1)
        sampled = tf.random.uniform((b, 1), 0, 10, tf.int32)
        fake = gen([noise, sampled], training=False)
        x = tf.concat([x_real, fake], 0)
        aux_y = tf.concat([y_real, sampled[:, 0]], 0)
        with tf.GradientTape() as tape:
            p_fake, p_aux = disc(x, training=True)
            d_loss = bce(y_d, p_fake) + sce(aux_y, p_aux, sample_weight=w_aux)
        d_opt.apply_gradients(zip(tape.gradient(d_loss, disc.trainable_variables), disc.trainable_variables))
        noise = tf.random.uniform((gb, LATENT), -1, 1)
        sampled = tf.random.uniform((gb, 1), 0, 10, tf.int32)
        with tf.GradientTape() as tape:
            p_fake, p_aux = disc(gen([noise, sampled], training=True), training=True)
            g_loss = bce(trick, p_fake) + sce(sampled[:, 0], p_aux)
        g_opt.apply_gradients(zip(tape.gradient(g_loss, gen.trainable_variables), gen.trainable_variables))
        return d_loss, g_loss

    return lambda x_real, y_real, rng: train_step(tf.constant(x_real), tf.constant(y_real, tf.int32))


def bench_acgan(variant, args, x, y):
    x = (x.astype(np.float32) - 127.5) / 127.5
    step = (acgan_train_on_batch(args) if variant == "train_on_batch"
            else acgan_tf_function(args, jit=(variant == "tf_function_jit")))
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x))
    b = args.batch
    t0 = t_start = time.perf_counter()
    c0, first_step = time.process_time(), None
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        idx = perm[(i * b) % (len(x) - b):][:b]
        d_loss, g_loss = step(x[idx], y[idx], rng)
        if i == 0:
            first_step = time.perf_counter() - t_start  # the CPU runs the step synchronously
        if i < args.warmup or (i - args.warmup + 1) % 10 == 0:
            log(f"  step {i + 1}: {time.perf_counter() - t_start:.1f}s d_loss={np.ravel(d_loss)[0]:.4f} "
                f"g_loss={np.ravel(g_loss)[0]:.4f}")
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"examples_per_sec": args.steps * b / sec, "ms_per_step": 1000 * sec / args.steps,
            "cpu_ms_per_step": 1000 * cpu / args.steps,
            "compile_s": max(0.0, (t0 - t_start) - args.warmup * sec / args.steps),
            "first_step_s": first_step, "warmup_steps": args.warmup,
            "batch": b, "gen_batch": args.gen_batch, "steps": args.steps,
            "d_loss": float(np.ravel(d_loss)[0]), "g_loss": float(np.ravel(g_loss)[0])}


def parse_args():
    default_dir = os.environ.get("MNIST_DIR", str(REPO_ROOT.parent / "shared" / "data" / "mnist"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=list(VARIANTS), default="cnn_seed")
    p.add_argument("--variant", default="all",
                   help="all (fit,fit_jit | train_on_batch,tf_function), eager (jit_compile=False), "
                   "compiled (jit_compile=True) or a comma list of: " + ", ".join(sum(VARIANTS.values(), [])))
    p.add_argument("--jit_compile", action="store_true", help="the same as --variant=compiled")
    p.add_argument("--epochs", type=int, default=3, help="cnn_seed: epochs (the first is warm-up)")
    p.add_argument("--steps", type=int, default=None,
                   help="cnn_seed: steps per epoch (default: full epoch); acgan: timed steps (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="acgan: untimed warm-up steps")
    p.add_argument("--batch", type=int, default=None, help="default 128 (cnn_seed) / 100 (acgan)")
    p.add_argument("--gen_batch", type=int, default=200, help="acgan: generator-update batch (example: 2*100)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--mnist_dir", default=default_dir)
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = p.parse_args()
    args.batch = args.batch or (128 if args.model == "cnn_seed" else 100)
    if args.model == "acgan" and args.steps is None:
        args.steps = 30
    if args.jit_compile:
        args.variant = "compiled"
    variants = (DEFAULT_VARIANTS[args.model] if args.variant == "all"
                else ALIASES[args.variant][args.model] if args.variant in ALIASES
                else args.variant.split(","))
    if not set(variants) <= set(VARIANTS[args.model]):
        p.error(f"--variant for {args.model}: all | eager | compiled | {' | '.join(VARIANTS[args.model])}")
    return args, variants


def run_variants(args, variants, x, y):
    """Each variant's result; a jit_compile variant XLA can't compile falls back to its eager twin."""
    bench = bench_cnn_seed if args.model == "cnn_seed" else bench_acgan
    results, errors = {}, {}
    for v in variants:
        log(f"[keras {args.model}] variant {v}")
        try:
            results[v] = bench(v, args, x, y)
        except Exception as e:  # pylint: disable=broad-except
            if v not in NO_JIT:
                raise
            # XLA can't compile some ops on some machines: measure the jit_compile=False counterpart
            errors[v] = f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"
            log(f"  jit_compile=True failed: {errors[v]}\n  falling back to {NO_JIT[v]} (jit_compile=False)")
            results[v] = dict(bench(NO_JIT[v], args, x, y), fallback=NO_JIT[v])
        log(f"  -> {results[v]['examples_per_sec']:.1f} img/s, {results[v]['ms_per_step']:.2f} ms/step")
    return results, errors


def main():
    args, variants = parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    x, y = load_mnist(args.mnist_dir)
    results, errors = run_variants(args, variants, x, y)
    best = max(results, key=lambda v: results[v]["examples_per_sec"])
    jit = best in NO_JIT and "fallback" not in results[best]
    name = f"keras {keras.__version__}" + (
        " jit_compile" if jit else " jit_compile failed, fell back to jit_compile=False" if best in errors else "")
    out = {"framework": name, "tf": tf.__version__, "model": args.model,
           "variant": best, "jit_compile": jit, **results[best], "threads": args.threads,
           "device": "gpu" if tf.config.list_physical_devices("GPU") else "cpu",
           "variants": {v: {k: round(r[k], 2) for k in ("examples_per_sec", "ms_per_step", "cpu_ms_per_step",
                                                         "compile_s")}
                        for v, r in results.items()}}
    if best in errors:
        out["jit_compile_error"] = errors[best]
        out["note"] = (f"jit_compile=True failed ({errors[best][:200]}); measured {results[best]['fallback']} "
                       "with jit_compile=False instead")
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        print(f"{out['framework']} {args.model} [{best}]: {out['examples_per_sec']:.1f} img/s, "
              f"{out['ms_per_step']:.2f} ms/step, compile {out['compile_s']:.1f} s ({args.threads} threads)")
        if "note" in out:
            print(out["note"])


if __name__ == "__main__":
    main()
