"""PyTorch peer benchmark (eager, or torch.compile with --compile): steady-state training throughput.

Trains the same models as the JAX code so their throughput can be compared as a
ratio measured in the same run on the same machine. torch.set_num_threads(--threads),
default: the number of usable cores. Default NCHW layout, float32, eager.
--device=cuda runs on a GPU: data, shuffles and noise on the GPU, no host sync inside the
timed loop; --bf16 adds torch.autocast(bfloat16) there.

--compile: the same work through torch.compile (TorchInductor, dynamic=False): the loss
computation (forward, whose backward AOTAutograd compiles too) and the optimizer's step are
each one compiled function; zero_grad and backward() stay calls from Python. --compile_mode:
"default" on CPU (needs a C++ compiler: g++ or $CXX), "max-autotune" on CUDA.
--channels_last (default: on for --compile on CUDA) puts the models and images in
channels-last memory format. Compile time is reported separately: compile_s is what the
first epoch (cnn_seed) or the --warmup steps (acgan) took beyond their steady-state time,
first_step_s the first step alone. Compilation starts cold: inductor's caches go to a fresh
temporary folder unless $TORCHINDUCTOR_CACHE_DIR is set.

  cnn_seed  The course's Keras CNN (27,320 params): Conv2d(1,16,3)+ReLU -> MaxPool(2)
            -> Dropout(.25) -> Flatten -> Linear(2704,10)+ReLU -> Dropout(.5)
            -> Linear(10,10); softmax cross-entropy (F.cross_entropy on logits);
            Adadelta(lr=1.0, rho=0.95, eps=1e-7); batch 128 on the first 48,000
            MNIST training images (the 80% that validation_split=0.2 keeps),
            pixels /255, pre-loaded as one tensor; each epoch shuffles indices
            (torch.randperm) and indexes batches. Epoch 1 is warm-up; the median of
            the remaining epoch times is reported.
  acgan     The Keras MNIST ACGAN example. One step = one discriminator update on
            100 real + 100 generated images (aux-class loss weighted 2 on real, 0 on
            fake, labels soft_one=0.95, as in the example) and one generator update
            through the discriminator on --gen_batch fresh noise samples (200 = 2*100
            as in the example by default). Adam(2e-4, betas=(0.5, 0.999), eps=1e-7
            as Keras). 'same' padding as Keras (stride-2 convs use padding=1: same
            output shape, symmetric instead of TF's bottom/right-only padding).
            The first --warmup steps are excluded; throughput is the total over the
            --steps timed steps, in real images/s (100 per step).

Run (from the repo root, in the peers venv):
  /work/venv-peers/bin/python scripts/peers/torch_peer.py --model=cnn_seed --epochs=3 --json
  /work/venv-peers/bin/python scripts/peers/torch_peer.py --model=cnn_seed --epochs=3 --compile --json
  /work/venv-peers/bin/python scripts/peers/torch_peer.py --model=acgan --warmup=5 --steps=30 --json
Prints exactly one JSON line on stdout with --json (logs go to stderr); if the run fails
(e.g. torch.compile without a C++ compiler) that line has "error" and the exit status is 1. Besides wall
time it reports cpu_ms_per_step (this process's CPU time, all threads, per step): if
it is well below threads * ms_per_step, other processes were competing for the CPU.
"""

import argparse
import atexit
import functools
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Compile time is measured cold: TorchInductor's on-disk caches (FX graphs, AOTAutograd, the C++
# and Triton kernels) go to a fresh folder of this run unless $TORCHINDUCTOR_CACHE_DIR is set.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="torch_peer_inductor_")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
LATENT = 100


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def load_mnist(mnist_dir):
    def read(name, offset):
        with gzip.open(Path(mnist_dir) / name, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    y = read("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return x, y


# ----------------------------------------------------------------- cnn_seed
def sync(args):
    if args.device == "cuda":
        torch.cuda.synchronize()


def autocast(args):
    return torch.autocast(args.device, torch.bfloat16, enabled=args.bf16)


def compiled(args, fn):
    """fn through torch.compile with --compile (static shapes: every batch size its own graph)."""
    return torch.compile(fn, mode=args.compile_mode, dynamic=False) if args.compile else fn


def layout(args, t):
    """Images (N, C, H, W) and models in channels-last memory format with --channels_last."""
    return t.to(memory_format=torch.channels_last) if args.channels_last else t


def optimizer_step(args, opt):
    """opt.step(), compiled with --compile (the optimizer-compilation recipe: a wrapper function)."""
    def step():
        opt.step()
    return compiled(args, step)


def warmup_and_steady(first_s, n_first, steady_step_s):
    """compile_s: what the first n_first steps took beyond n_first steady-state steps."""
    return max(0.0, first_s - n_first * steady_step_s)


def bench_cnn_seed(args, x, y):
    n = 48000
    dev = args.device
    x = layout(args, torch.from_numpy(x[:n].astype(np.float32) / 255.0).to(dev))
    y = torch.from_numpy(y[:n]).to(dev)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(16 * 13 * 13, 10), nn.ReLU(), nn.Dropout(0.5), nn.Linear(10, 10)).to(dev)
    model = layout(args, model)
    assert sum(p.numel() for p in model.parameters()) == 27320
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    steps = min(args.steps or -(-n // args.batch), -(-n // args.batch))
    n_used = min(n, steps * args.batch)
    model.train()

    @functools.partial(compiled, args)
    def loss_fn(idx):
        with autocast(args):
            return F.cross_entropy(model(x[idx]), y[idx])
    opt_step = optimizer_step(args, opt)

    times, cpu_times, first_step = [], [], None
    for epoch in range(args.epochs):
        sync(args)
        t0, c0 = time.perf_counter(), time.process_time()
        perm = torch.randperm(n_used, device=dev)
        for i in range(steps):
            loss = loss_fn(perm[i * args.batch:(i + 1) * args.batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt_step()
            if first_step is None:
                sync(args)
                first_step, first_cpu = time.perf_counter() - t0, time.process_time() - c0
                log(f"  first step: {first_step:.2f}s")
        sync(args)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        log(f"  epoch {epoch + 1}: {times[-1]:.2f}s loss={loss.item():.4f}")
    if len(times) > 1 or steps == 1:  # epoch 1 is warm-up (or the only timing there is)
        sec, cpu = statistics.median(times[1:] or times), statistics.median(cpu_times[1:] or cpu_times)
    else:  # one epoch: its steps after the first, scaled to the epoch
        sec = (times[0] - first_step) * steps / max(1, steps - 1)
        cpu = (cpu_times[0] - first_cpu) * steps / max(1, steps - 1)
    return {"examples_per_sec": n_used / sec, "ms_per_step": 1000 * sec / steps,
            "cpu_ms_per_step": 1000 * cpu / steps,
            "compile_s": warmup_and_steady(times[0], steps, sec / steps),
            "first_step_s": first_step,
            "batch": args.batch, "steps": steps * max(1, args.epochs - 1),
            "epoch_seconds": [round(t, 3) for t in times], "loss": loss.item()}


# -------------------------------------------------------------------- acgan
class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, LATENT)
        nn.init.xavier_normal_(self.emb.weight)
        self.fc = nn.Sequential(nn.Linear(LATENT, 1024), nn.ReLU(), nn.Linear(1024, 128 * 7 * 7), nn.ReLU())
        conv1 = nn.Conv2d(128, 256, 5, padding="same")
        nn.init.kaiming_normal_(conv1.weight, nonlinearity="relu")
        self.conv = nn.Sequential(
            nn.Upsample(scale_factor=2), conv1, nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(256, 128, 5, padding="same"), nn.ReLU(),
            nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(128, 1, 2), nn.Tanh())  # TF "same" for k=2

    def forward(self, z, c):
        return self.conv(self.fc(z * self.emb(c)).view(-1, 128, 7, 7))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        layers, cin = [], 1
        for cout, stride in [(32, 2), (64, 1), (128, 2), (256, 1)]:
            layers += [nn.Conv2d(cin, cout, 3, stride, padding=1), nn.LeakyReLU(0.2), nn.Dropout(0.3)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.fake = nn.Linear(256 * 7 * 7, 1)  # logits: sigmoid folded into the loss
        self.aux = nn.Linear(256 * 7 * 7, 10)  # logits: softmax folded into the loss

    def forward(self, x):
        h = self.features(x)
        return self.fake(h)[:, 0], self.aux(h)


def bench_acgan(args, x, y):
    dev = args.device
    x = layout(args, torch.from_numpy((x.astype(np.float32) - 127.5) / 127.5).to(dev))
    y = torch.from_numpy(y).to(dev)
    gen, disc = layout(args, Generator().to(dev)), layout(args, Discriminator().to(dev))
    gen.train()
    disc.train()
    g_opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    d_opt = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    b, gb = args.batch, args.gen_batch
    y_d = torch.tensor([0.95] * b + [0.0] * b, device=dev)
    w_aux = torch.tensor([2.0] * b + [0.0] * b, device=dev)
    trick = torch.full((gb,), 0.95, device=dev)
    perm = torch.randperm(len(x), device=dev)

    @functools.partial(compiled, args)
    def d_loss_fn(idx, z, c):
        with torch.no_grad(), autocast(args):
            fake = gen(z, c)
        with autocast(args):
            p_fake, p_aux = disc(torch.cat([x[idx], layout(args, fake)]))
        aux_y = torch.cat([y[idx], c])
        return (F.binary_cross_entropy_with_logits(p_fake.float(), y_d)
                + (F.cross_entropy(p_aux.float(), aux_y, reduction="none") * w_aux).mean())

    @functools.partial(compiled, args)
    def g_loss_fn(z, c):
        with autocast(args):
            p_fake, p_aux = disc(gen(z, c))
        return (F.binary_cross_entropy_with_logits(p_fake.float(), trick)
                + F.cross_entropy(p_aux.float(), c))

    d_opt_step, g_opt_step = optimizer_step(args, d_opt), optimizer_step(args, g_opt)

    def step(i):
        idx = perm[(i * b) % (len(x) - b):][:b]
        z = torch.rand(b, LATENT, device=dev) * 2 - 1
        c = torch.randint(0, 10, (b,), device=dev)
        d_loss = d_loss_fn(idx, z, c)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt_step()
        z = torch.rand(gb, LATENT, device=dev) * 2 - 1
        c = torch.randint(0, 10, (gb,), device=dev)
        disc.requires_grad_(False)  # frozen discriminator, as the example's combined model
        g_loss = g_loss_fn(z, c)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt_step()
        disc.requires_grad_(True)
        return d_loss, g_loss  # tensors: reading them would sync the GPU every step

    result = time_steps(args, step)
    return {**result, "batch": b, "gen_batch": gb}


def time_steps(args, step):
    """Runs step(i) for --warmup then --steps steps; the steady-state rate of the latter."""
    first_step = None
    t_start = t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync(args)
            t0, c0 = time.perf_counter(), time.process_time()
        d_loss, g_loss = step(i)
        if i == 0:
            sync(args)
            first_step = time.perf_counter() - t_start
        if i < args.warmup or (i - args.warmup + 1) % max(10, args.steps // 5) == 0:
            log(f"  step {i + 1}: {time.perf_counter() - t_start:.1f}s d_loss={d_loss.item():.4f} "
                f"g_loss={g_loss.item():.4f}")
    sync(args)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"examples_per_sec": args.steps * args.batch / sec, "ms_per_step": 1000 * sec / args.steps,
            "cpu_ms_per_step": 1000 * cpu / args.steps,
            "compile_s": warmup_and_steady(t0 - t_start, args.warmup, sec / args.steps),
            "first_step_s": first_step, "warmup_steps": args.warmup, "steps": args.steps,
            "d_loss": d_loss.item(), "g_loss": g_loss.item()}


def main():
    default_dir = os.environ.get("MNIST_DIR", str(REPO_ROOT.parent / "shared" / "data" / "mnist"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["cnn_seed", "acgan"], default="cnn_seed")
    p.add_argument("--epochs", type=int, default=3, help="cnn_seed: epochs (the first is warm-up)")
    p.add_argument("--steps", type=int, default=None,
                   help="cnn_seed: steps per epoch (default: full epoch); acgan: timed steps (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="acgan: untimed warm-up steps")
    p.add_argument("--batch", type=int, default=None, help="default 128 (cnn_seed) / 100 (acgan)")
    p.add_argument("--gen_batch", type=int, default=200, help="acgan: generator-update batch (example: 2*100)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--mnist_dir", default=default_dir)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true", help="torch.autocast to bfloat16")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile (inductor) the loss computations and optimizer steps")
    p.add_argument("--compile_mode", default=None,
                   help="torch.compile mode (default: 'default' on CPU, 'max-autotune' on CUDA)")
    p.add_argument("--channels_last", default=None, action=argparse.BooleanOptionalAction,
                   help="channels-last memory format (default: on for --compile on CUDA)")
    p.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    args = p.parse_args()
    args.batch = args.batch or (128 if args.model == "cnn_seed" else 100)
    if args.model == "acgan" and args.steps is None:
        args.steps = 30
    if args.compile_mode is None:
        args.compile_mode = "max-autotune" if args.device == "cuda" else "default"
    if args.channels_last is None:
        args.channels_last = args.compile and args.device == "cuda"

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    name = f"torch {torch.__version__} " + (
        f"compiled (inductor{'' if args.compile_mode == 'default' else ', ' + args.compile_mode})"
        if args.compile else "eager") + (" bf16" if args.bf16 else "") + (
        " channels-last" if args.channels_last else "")
    out = {"framework": name, "model": args.model, "variant": "compiled" if args.compile else "eager",
           "compile_mode": args.compile_mode if args.compile else None,
           "channels_last": args.channels_last, "threads": args.threads,
           "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}
    log(f"[{name} {args.model}]")
    try:
        if args.compile and args.device == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
            raise RuntimeError("torch.compile on CPU needs a C++ compiler (g++ or $CXX); none found")
        x, y = load_mnist(args.mnist_dir)
        res = (bench_cnn_seed if args.model == "cnn_seed" else bench_acgan)(args, x, y)
    except Exception as e:  # pylint: disable=broad-except
        traceback.print_exc()
        out["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        print(json.dumps(out) if args.json else f"{name} {args.model}: error {out['error']}", flush=True)
        sys.exit(1)
    out.update(res)
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        print(f"{out['framework']} {args.model}: {out['examples_per_sec']:.1f} img/s, "
              f"{out['ms_per_step']:.2f} ms/step, compile {out['compile_s']:.1f} s "
              f"({args.threads} threads)")


if __name__ == "__main__":
    main()
