"""pytorch-fid's Inception weights file, read without PyTorch, as gan/inception.py's parameters.

The file is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (its release page: URL below),
given as --config.inception_weights=PATH or, machine-wide, $INCEPTION_WEIGHTS. Nothing is ever
downloaded. Reading it without torch keeps PyTorch out of the project's dependencies: a .pth is a
pickle of tensors, either a zip (data.pkl and one file per storage; torch >= 1.6) or the legacy
stream (magic, protocol, system info, the pickle, then the storages); `read_state_dict` reads
both with an unpickler that builds only ordered dicts, storages and tensors (numpy arrays), so a
file cannot run code. `to_params` checks every tensor's name and shape against the network and
folds each batch norm (eps 1e-3) into its convolution: kernel * g / sqrt(v + eps), bias
b - m * g / sqrt(v + eps), computed in float64.
"""

import hashlib
import io
import os
import pickle
import zipfile

import numpy as np

from common.config import ConfigError
from gan.inception_options import ENV

FILE = "pt_inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FILE}"
STANDARD_SHA256_PREFIX = "6726825d"  # the hash prefix in its name (torch.hub's check)
BN_EPS = 1e-3
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class WeightsError(ConfigError):
  """The Inception weights file is missing or not pytorch-fid's format."""


def _get_it(path: str, why: str) -> WeightsError:
  return WeightsError(f"Inception weights {why}: {path!r}. Download {URL} (pytorch-fid's FID "
                      f"Inception) and pass its path with --config.inception_weights=PATH or set "
                      f"${ENV} to it.")


# --- the network's tensors ----------------------------------------------------------------------

def _block_convs(kind: str, cin: int, extra: int) -> list[tuple[str, int, int, int, int]]:
  """(branch, in, out, kh, kw) of each convolution of an Inception block."""
  if kind == "A":
    return [("branch1x1", cin, 64, 1, 1), ("branch5x5_1", cin, 48, 1, 1),
            ("branch5x5_2", 48, 64, 5, 5), ("branch3x3dbl_1", cin, 64, 1, 1),
            ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3),
            ("branch_pool", cin, extra, 1, 1)]
  if kind == "B":
    return [("branch3x3", cin, 384, 3, 3), ("branch3x3dbl_1", cin, 64, 1, 1),
            ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3)]
  if kind == "C":
    c = extra
    return [("branch1x1", cin, 192, 1, 1), ("branch7x7_1", cin, c, 1, 1),
            ("branch7x7_2", c, c, 1, 7), ("branch7x7_3", c, 192, 7, 1),
            ("branch7x7dbl_1", cin, c, 1, 1), ("branch7x7dbl_2", c, c, 7, 1),
            ("branch7x7dbl_3", c, c, 1, 7), ("branch7x7dbl_4", c, c, 7, 1),
            ("branch7x7dbl_5", c, 192, 1, 7), ("branch_pool", cin, 192, 1, 1)]
  if kind == "D":
    return [("branch3x3_1", cin, 192, 1, 1), ("branch3x3_2", 192, 320, 3, 3),
            ("branch7x7x3_1", cin, 192, 1, 1), ("branch7x7x3_2", 192, 192, 1, 7),
            ("branch7x7x3_3", 192, 192, 7, 1), ("branch7x7x3_4", 192, 192, 3, 3)]
  return [("branch1x1", cin, 320, 1, 1), ("branch3x3_1", cin, 384, 1, 1),
          ("branch3x3_2a", 384, 384, 1, 3), ("branch3x3_2b", 384, 384, 3, 1),
          ("branch3x3dbl_1", cin, 448, 1, 1), ("branch3x3dbl_2", 448, 384, 3, 3),
          ("branch3x3dbl_3a", 384, 384, 1, 3), ("branch3x3dbl_3b", 384, 384, 3, 1),
          ("branch_pool", cin, 192, 1, 1)]


def conv_shapes() -> dict[str, tuple[int, int, int, int]]:
  """Every convolution's PyTorch weight shape (out, in, kh, kw), by module name."""
  shapes = {"Conv2d_1a_3x3": (32, 3, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3),
            "Conv2d_2b_3x3": (64, 32, 3, 3), "Conv2d_3b_1x1": (80, 64, 1, 1),
            "Conv2d_4a_3x3": (192, 80, 3, 3)}
  blocks = [("Mixed_5b", "A", 192, 32), ("Mixed_5c", "A", 256, 64), ("Mixed_5d", "A", 288, 64),
            ("Mixed_6a", "B", 288, 0), ("Mixed_6b", "C", 768, 128), ("Mixed_6c", "C", 768, 160),
            ("Mixed_6d", "C", 768, 160), ("Mixed_6e", "C", 768, 192), ("Mixed_7a", "D", 768, 0),
            ("Mixed_7b", "E", 1280, 0), ("Mixed_7c", "E", 2048, 0)]
  for block, kind, cin, extra in blocks:
    for branch, i, o, kh, kw in _block_convs(kind, cin, extra):
      shapes[f"{block}.{branch}"] = (o, i, kh, kw)
  return shapes


def expected_tensors() -> dict[str, tuple[int, ...]]:
  """The state dict's tensors (name -> shape) that the network reads."""
  out = {}
  for name, shape in conv_shapes().items():
    out[f"{name}.conv.weight"] = shape
    for stat in ("weight", "bias", "running_mean", "running_var"):
      out[f"{name}.bn.{stat}"] = (shape[0],)
  out["fc.weight"], out["fc.bias"] = (1008, 2048), (1008,)
  return out


def to_params(state: dict[str, np.ndarray]) -> dict:
  """pytorch-fid's state dict -> {module: (HWIO kernel, bias)} float32, batch norm folded in."""
  for name, shape in expected_tensors().items():
    if name not in state:
      raise WeightsError(f"The Inception weights have no tensor {name!r}: not pytorch-fid's FID "
                         f"Inception ({FILE}).")
    if tuple(state[name].shape) != shape:
      raise WeightsError(f"Inception tensor {name!r} has shape {tuple(state[name].shape)}, not "
                         f"{shape}: not pytorch-fid's FID Inception ({FILE}).")
  params = {}
  for name in conv_shapes():
    s = {k: np.asarray(state[f"{name}.{k}"], np.float64)
         for k in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")}
    scale = s["bn.weight"] / np.sqrt(s["bn.running_var"] + BN_EPS)
    kernel = (s["conv.weight"] * scale[:, None, None, None]).transpose(2, 3, 1, 0)
    params[name] = (kernel.astype(np.float32),
                    (s["bn.bias"] - s["bn.running_mean"] * scale).astype(np.float32))
  params["fc"] = (np.asarray(state["fc.weight"], np.float32).T.copy(),
                  np.asarray(state["fc.bias"], np.float32))
  return params


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """Seeded weights in pytorch-fid's layout, with non-trivial batch-norm statistics, scaled so
  activations keep their size through the network (He-normal kernels): the parity tests'."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, shape in expected_tensors().items():
    n = shape[0]
    if name.endswith("conv.weight"):
      v = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    elif name.endswith("running_var"):
      v = rng.uniform(0.5, 2.0, n)
    elif name.endswith("bn.weight"):
      v = rng.uniform(0.6, 1.3, n)
    elif name.startswith("fc.weight"):
      v = rng.normal(0.0, 8.0 / np.sqrt(shape[1]), shape)
    else:  # bn.bias, bn.running_mean, fc.bias
      v = rng.normal(0.0, 0.1, n)
    state[name] = v.astype(np.float32)
  return state


# --- reading a .pth without torch ---------------------------------------------------------------

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _Storage:
  def __init__(self, dtype, numel: int):
    self.dtype, self.numel, self.data = np.dtype(dtype), numel, None


class _Tensor:
  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride

  def array(self) -> np.ndarray:
    data = self.storage.data
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size,
                                           tuple(s * item for s in self.stride))
    return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _Tensor(storage, offset, size, stride)


class _Dict(dict):
  """An OrderedDict stand-in that takes the `_metadata` attribute torch.save stores."""


class _Unpickler(pickle.Unpickler):
  """Builds only dicts, storages and tensors; anything else is refused."""

  def __init__(self, file, storages: dict):
    super().__init__(file)
    self.storages = storages

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return _Dict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return lambda tensor, *unused: tensor
    if module == "torch" and name in _DTYPES:
      return _DTYPES[name]
    raise pickle.UnpicklingError(f"unexpected object {module}.{name}")

  def persistent_load(self, pid):
    _, dtype, key, _, numel, *view = pid
    if view and view[0] is not None:
      raise pickle.UnpicklingError("storage views are not supported")
    return self.storages.setdefault(str(key), _Storage(dtype, numel))


def _read_zip(path: str) -> tuple[object, dict]:
  with zipfile.ZipFile(path) as z:
    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
    prefix = pkl[:-len("data.pkl")]
    storages = {}
    obj = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
    for key, s in storages.items():
      s.data = np.frombuffer(z.read(f"{prefix}data/{key}"), s.dtype.newbyteorder("<"))
  return obj, storages


def _read_legacy(path: str) -> tuple[object, dict]:
  with open(path, "rb") as f:
    if pickle.load(f) != _LEGACY_MAGIC:
      raise pickle.UnpicklingError("not a torch file")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info
    storages = {}
    obj = _Unpickler(f, storages).load()
    for key in pickle.load(f):
      s = storages[str(key)]
      numel = int.from_bytes(f.read(8), "little")
      s.data = np.frombuffer(f.read(numel * s.dtype.itemsize), s.dtype.newbyteorder("<"))
  return obj, storages


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a torch.save'd state dict (zip or legacy format) as numpy arrays."""
  if not os.path.isfile(path):
    raise _get_it(path, "not found")
  try:
    obj, _ = (_read_zip if zipfile.is_zipfile(path) else _read_legacy)(path)
    if not isinstance(obj, dict):
      raise pickle.UnpicklingError("not a state dict")
    return {k: v.array() for k, v in obj.items() if isinstance(v, _Tensor)}
  except (pickle.UnpicklingError, EOFError, ValueError, KeyError, StopIteration, TypeError,
          AttributeError) as e:
    raise _get_it(path, f"are not a PyTorch state dict ({e})") from None


def save_state_dict(path: str, state: dict[str, np.ndarray]) -> None:
  """Writes float32 arrays as torch.save does (zip format, pickle protocol 2): a file that
  torch.load and pytorch-fid read, made without torch (the tests' random-weights files)."""
  def text(s: str) -> bytes:
    return b"X" + len(s.encode()).to_bytes(4, "little") + s.encode()

  def ints(values) -> bytes:
    return b"(" + b"".join(b"J" + int(v).to_bytes(4, "little", signed=True)
                           for v in values) + b"t"

  ordered_dict = b"ccollections\nOrderedDict\n)R"
  out = [b"\x80\x02", ordered_dict, b"("]
  for i, (name, value) in enumerate(state.items()):
    v = np.ascontiguousarray(value, np.float32)
    strides = [int(np.prod(v.shape[d + 1:])) for d in range(v.ndim)]
    out += [text(name), b"ctorch._utils\n_rebuild_tensor_v2\n(",
            b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text(str(i)) + text("cpu")
            + ints([v.size])[1:-1] + b"tQ", ints([0])[1:-1], ints(v.shape), ints(strides),
            b"\x89", ordered_dict, b"tR"]
  out.append(b"u.")
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", b"".join(out))
    z.writestr("archive/byteorder", "little")
    for i, value in enumerate(state.values()):
      z.writestr(f"archive/data/{i}", np.ascontiguousarray(value, "<f4").tobytes())
    z.writestr("archive/version", "3\n")


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def load(path: str) -> tuple[dict, dict]:
  """(parameters, record) of the weights file; the record names the file, its SHA-256 and
  whether it is pytorch-fid's standard file (without it, numbers are not comparable to papers)."""
  params = to_params(read_state_dict(path))
  digest = sha256(path)
  return params, {"inception_weights": os.path.abspath(path), "inception_weights_sha256": digest,
                  "inception_weights_standard": digest.startswith(STANDARD_SHA256_PREFIX)}
