"""pytorch-fid peer for scripts/bench_inception.py: images per second of pytorch-fid's FID
InceptionV3 (resize to 299, pool3) and its fc layer (logits), on the same uint8 images and batch.

    python scripts/peers/fid_peer.py --weights=W.pth --images=I.npy --batch=200 \
        [--device=cpu|cuda] [--repeats=3] [--threads=N]

Each batch goes host -> device as uint8, is scaled to [0, 1] there and comes back as pool3 and
logits, as our extractor's; float32 at the highest matmul precision (TF32 off on CUDA). The first
pass over the images is warm-up; prints one JSON line with the median of --repeats passes.
"""

import argparse
import json
import os
import statistics
import sys
import time
import types

import numpy as np

if "torchvision._meta_registrations" not in sys.modules:  # CPU torch beside a CUDA torchvision
  sys.modules["torchvision._meta_registrations"] = types.ModuleType("_meta_registrations")

import torch  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
from pytorch_fid import inception as fid_inception  # noqa: E402  pylint: disable=g-import-not-at-top


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--weights", required=True)
  p.add_argument("--images", required=True)
  p.add_argument("--batch", type=int, default=200)
  p.add_argument("--device", default="cpu")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
  a = p.parse_args()
  torch.set_num_threads(a.threads)
  torch.set_float32_matmul_precision("highest")
  torch.backends.cudnn.allow_tf32 = False
  state = torch.load(a.weights, weights_only=True)
  fid_inception.load_state_dict_from_url = lambda *args, **kwargs: dict(state)
  device = torch.device(a.device)
  model = fid_inception.InceptionV3([3]).eval().to(device)
  fc = fid_inception.fid_inception_v3().fc.eval().to(device)
  images = np.load(a.images)

  def one_pass():
    start = time.perf_counter()
    with torch.no_grad():
      for i in range(0, len(images), a.batch):
        x = torch.from_numpy(images[i:i + a.batch]).to(device).permute(0, 3, 1, 2).float() / 255
        pool3 = model(x)[0][:, :, 0, 0]
        pool3.cpu().numpy(), fc(pool3).cpu().numpy()  # pylint: disable=expression-not-assigned
    return time.perf_counter() - start

  first = one_pass()
  times = [one_pass() for _ in range(a.repeats)]
  print(json.dumps({"framework": f"pytorch-fid (torch {torch.__version__})", "device": a.device,
                    "batch": a.batch, "images": len(images), "first_pass_s": first,
                    "images_per_sec": len(images) / statistics.median(times),
                    "images_per_sec_runs": [len(images) / t for t in times],
                    "threads": a.threads}))


if __name__ == "__main__":
  main()
