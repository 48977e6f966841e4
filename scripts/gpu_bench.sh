#!/bin/bash
# One run of every GPU figure in BENCHMARKS.md, on a machine with a GPU, JAX and PyTorch:
#   1. the course CNN's epoch (48,000 images) against PyTorch eager on the same GPU;
#   2. the Keras-architecture ACGAN's epoch (60,000 images), float32 and bfloat16, against PyTorch;
#   3. full-length ACGAN (bfloat16) and cGAN runs side by side, stopped by SIGTERM at a deadline
#      (the loop checkpoints and exits), then evaluated with the classifier in $DEV/cnn.
#
#   DEV=.dev OUT=/tmp/out bash scripts/gpu_bench.sh
#
# $DEV holds what a machine without network needs: whl/ (wheels missing there), tfds/ (a TFDS
# data_dir with load_host's decoded arrays in _arrays/), mnist/ (the original files, for the torch
# peer) and cnn/ (a `configs/cnn.py` run: config.json and its last checkpoint).
set -u
DEV=${DEV:-.dev}
OUT=${OUT:-/tmp/gpu_bench_out}
BUDGET=${BUDGET:-480}   # seconds for the whole script; the GAN runs stop so that evaluation fits
PRESET=${PRESET:-}      # a dry run elsewhere: PRESET=:test BENCH_ARGS="--steps=3 --repeats=1"
BENCH_ARGS=${BENCH_ARGS:-}
LOGS=/tmp/gpu_bench_logs   # stderr of each stage; bundled with the runs into $OUT/runs.tgz
mkdir -p "$OUT" "$LOGS" /tmp/runs
if ls "$DEV"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$DEV"/whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
export TFDS_DATA_DIR=$DEV/tfds MNIST_DIR=$DEV/mnist
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
python3 -c "import jax, flax, optax, orbax.checkpoint as ocp, torch; print('jax', jax.__version__,
'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, jax.devices())"

bench() {  # name, timeout, bench.py arguments...
  local name=$1 t=$2; shift 2
  echo "== bench $name (t=${SECONDS}s)"
  timeout "$t" python3 scripts/bench.py --peers=torch --peer_python=python3 "$@" $BENCH_ARGS \
      >"$OUT/bench_$name.txt" 2>"$LOGS/bench_$name.err"
  echo "rc=$?"; grep -v "^W\|^I" "$OUT/bench_$name.txt"; tail -3 "$LOGS/bench_$name.err"
}
bench cnn_seed 100 --config=configs/cnn_seed.py$PRESET --repeats=5 --peer_epochs=4
bench acgan_f32 130 --config=configs/acgan.py$PRESET --repeats=3 --peer_steps=200
bench acgan_bf16 130 --config=configs/acgan.py$PRESET --config.dtype=bfloat16 --repeats=3 \
    --peer_steps=200 --peer_bf16

train_until=$((BUDGET - 60 - SECONDS))
echo "== GAN runs, ${train_until}s (t=${SECONDS}s)"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.4
for v in acgan cgan; do
  extra=""; [ "$v" = acgan ] && extra="--config.dtype=bfloat16"   # 4x faster, same quality
  timeout -s TERM "$train_until" python3 -m gan.main --config=configs/$v.py$PRESET $extra \
      --workdir=/tmp/runs/$v --config.classifier_workdir="$DEV/cnn" --config.progress_bar=off \
      >"$OUT/$v.log" 2>&1 &
done
wait
for v in acgan cgan; do
  grep -q '"test"\|classifier_score' /tmp/runs/$v/results.json 2>/dev/null || \
    timeout 50 python3 -m gan.evaluate --workdir=/tmp/runs/$v --classifier_workdir="$DEV/cnn" --num=10000 \
        >>"$OUT/$v.log" 2>&1 &
done
wait
for v in acgan cgan; do
  echo "== $v (t=${SECONDS}s)"; grep -i "epoch\|evaluation\|error\|preempt" "$OUT/$v.log" | tail -8
done
cp "$LOGS"/* /tmp/runs/
tar czf "$OUT/runs.tgz" --exclude=checkpoints --exclude=tensorboard -C /tmp runs 2>/dev/null
echo "done t=${SECONDS}s"
