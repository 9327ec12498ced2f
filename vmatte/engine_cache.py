"""Cache of derived artefacts: ONNX exports of user weights and TensorRT engines.

A TensorRT engine only runs on the GPU model and TensorRT version that built it, and only means
something for the weights it was built from. Each engine file therefore starts with a small JSON
header (magic, header length, the fields of its key, creation time, engine length and hash) that
is checked before the engine is deserialised: an engine built for another GPU, TensorRT version,
weights or shape profile is rebuilt, never run, and a damaged file is treated as stale.

File layout: MAGIC (8 bytes) | header length (uint32 little endian) | header JSON | engine bytes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .backends.base import GRAPH_VERSION

log = logging.getLogger(__name__)

MAGIC = b"VMTRTENG"
HEADER_FORMAT = "vmatte-engine/1"
_LEN = struct.Struct("<I")
MAX_HEADER = 1 << 20  # a header longer than this is corruption, not a header

# [name, (min, opt, max)] per engine input; shapes are tuples of ints (NCHW).
Shape = tuple[int, ...]
ShapeProfile = tuple[tuple[str, tuple[Shape, Shape, Shape]], ...]


def cache_dir() -> Path:
    """$VMATTE_CACHE, else the user's cache dir (~/.cache/vmatte)."""
    root = os.environ.get("VMATTE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vmatte")
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


def checkout_root() -> Path | None:
    """Root of the source checkout vmatte runs from (has pyproject.toml and .git), else None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / ".git").exists() else None


def _writable_dir(p: Path) -> bool:
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(p, os.W_OK | os.X_OK)


def engine_dir() -> Path:
    """Where engines live: $VMATTE_ENGINES; else $VMATTE_CACHE/engines when set; else engines/ of a
    writable checkout; else <user cache>/engines."""
    if os.environ.get("VMATTE_ENGINES"):
        p = Path(os.environ["VMATTE_ENGINES"])
        p.mkdir(parents=True, exist_ok=True)
        return p
    if not os.environ.get("VMATTE_CACHE"):
        root = checkout_root()
        if root is not None and _writable_dir(root / "engines"):
            return root / "engines"
    p = cache_dir() / "engines"
    p.mkdir(parents=True, exist_ok=True)
    return p


def canonical_profile(shapes: dict[str, tuple] | ShapeProfile) -> ShapeProfile:
    """Shape profile as a sorted tuple of (input name, (min, opt, max)) with int tuples: the form
    used in keys and headers, so dicts and JSON lists compare equal."""
    items = shapes.items() if isinstance(shapes, dict) else shapes
    out = []
    for name, mmo in items:
        if len(mmo) != 3:
            raise ValueError(f"shape profile of {name!r} has {len(mmo)} shapes; expected (min, opt, max)")
        out.append((str(name), tuple(tuple(int(d) for d in s) for s in mmo)))
    return tuple(sorted(out))



@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine depends on; its sha256 is the engine key."""

    model: str
    component: str
    weights_sha256: str
    profile: ShapeProfile
    precision: str  # "fp16" or "fp32"
    trt_version: str
    gpu_name: str
    compute_capability: str  # e.g. "8.6"
    batch: int = 1
    graph_version: int = GRAPH_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "profile", canonical_profile(self.profile))

    def fields(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def key(self) -> str:
        blob = json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.model}-{self.component}-{self.key[:16]}.engine"

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> "EngineSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def atomic_write(path: Path, chunks: list[bytes] | bytes) -> Path:
    """Write bytes to `path` through a temporary file in the same folder and an atomic rename, so a
    reader never sees a half-written file (also not after a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for c in [chunks] if isinstance(chunks, (bytes, bytearray, memoryview)) else chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def pack_engine(spec: EngineSpec, engine: bytes, created: float | None = None) -> bytes:
    """Header + engine bytes."""
    header = {
        "magic": HEADER_FORMAT,
        "key": spec.key,
        "fields": spec.fields(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created if created is not None else time.time())),
        "engine_bytes": len(engine),
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
    }
    hb = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _LEN.pack(len(hb)) + hb + bytes(engine)


def write_engine(path: str | Path, spec: EngineSpec, engine: bytes) -> Path:
    """Atomically write an engine file (header then serialized engine)."""
    return atomic_write(Path(path), pack_engine(spec, engine))


class StaleEngine(Exception):
    """An engine file that must not be run (damaged, or built for something else)."""


def read_engine_header(path: str | Path) -> tuple[dict[str, Any], int]:
    """(header dict, offset of the engine bytes); raises StaleEngine when the header is damaged."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + _LEN.size)
        if len(head) < len(MAGIC) + _LEN.size or head[: len(MAGIC)] != MAGIC:
            raise StaleEngine("no vmatte engine header (bad magic)")
        (n,) = _LEN.unpack(head[len(MAGIC) :])
        if n <= 0 or n > MAX_HEADER:
            raise StaleEngine(f"implausible header length {n}")
        raw = f.read(n)
    if len(raw) != n:
        raise StaleEngine("header is truncated")
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StaleEngine(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("magic") != HEADER_FORMAT or not isinstance(header.get("fields"), dict):
        raise StaleEngine(f"unknown header format {header.get('magic') if isinstance(header, dict) else None!r}")
    return header, len(MAGIC) + _LEN.size + n


_REASONS = {
    "gpu_name": "another GPU",
    "compute_capability": "another GPU architecture",
    "trt_version": "another TensorRT version",
    "weights_sha256": "other weights",
    "profile": "other input shapes",
    "precision": "another precision",
    "batch": "another batch size",
    "graph_version": "an older vmatte graph",
}


def mismatch_reason(found: dict[str, Any], expected: EngineSpec) -> str | None:
    """Why an engine with header fields `found` cannot serve `expected` (None when it can)."""
    want = expected.fields()
    for k, v in want.items():
        if found.get(k) != v:
            what = _REASONS.get(k, k)
            return f"built for {what} ({k}: {found.get(k)!r}, need {v!r})"
    return None


def load_engine_bytes(path: str | Path, expected: EngineSpec) -> bytes | None:
    """The serialized engine in `path` when it was built for exactly `expected`, else None (the
    reason is logged): missing file, damaged header or body, other GPU/TensorRT/weights/shapes."""
    path = Path(path)
    if not path.is_file():
        log.debug("no engine at %s", path)
        return None
    try:
        header, offset = read_engine_header(path)
        why = mismatch_reason(header["fields"], expected)
        if why is None and header.get("key") != expected.key:
            why = "key does not match its fields"
        if why is not None:
            log.warning("engine %s is stale: %s; it will be rebuilt", path.name, why)
            return None
        with open(path, "rb") as f:
            f.seek(offset)
            body = f.read()
        if len(body) != header.get("engine_bytes") or hashlib.sha256(body).hexdigest() != header.get("engine_sha256"):
            raise StaleEngine("engine bytes are truncated or damaged")
    except StaleEngine as e:
        log.warning("engine %s is damaged (%s); it will be rebuilt", path.name, e)
        return None
    except OSError as e:
        log.warning("engine %s cannot be read (%s); it will be rebuilt", path, e)
        return None
    return body


def get_or_build(spec: EngineSpec, build: Callable[[], bytes], directory: str | Path | None = None, force: bool = False) -> tuple[Path, bytes]:
    """(path, engine bytes) for `spec`: from the cache when valid, else from build() and written
    atomically to the cache (replacing a stale file of the same name)."""
    d = Path(directory) if directory is not None else engine_dir()
    path = d / spec.filename
    data = None if force else load_engine_bytes(path, spec)
    if data is None:
        log.info("building TensorRT engine %s", path.name)
        t0 = time.perf_counter()
        data = bytes(build())
        if not data:
            raise RuntimeError(f"the engine builder returned no bytes for {spec.component}")
        write_engine(path, spec, data)
        log.info("built %s (%.1f MB) in %.1f s", path.name, len(data) / 1e6, time.perf_counter() - t0)
    return path, data


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s).strip("-").lower() or "gpu"


def timing_cache_path(trt_version: str, gpu_name: str, compute_capability: str, directory: str | Path | None = None) -> Path:
    """TensorRT timing cache beside the engines; one per TensorRT version and GPU (a timing cache
    only transfers between identical devices and versions)."""
    d = Path(directory) if directory is not None else engine_dir()
    return d / f"timing-trt{trt_version}-{_slug(gpu_name)}-sm{compute_capability.replace('.', '')}.cache"


def tensorrt_version() -> str:
    """Installed TensorRT version; ImportError when missing."""
    import tensorrt

    return str(tensorrt.__version__)


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device `device`, via cuda-python's
    runtime bindings or torch; RuntimeError with the reason when no GPU is visible."""
    errors = []
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        err, prop = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
            return name.strip("\x00 "), f"{prop.major}.{prop.minor}"
        errors.append(f"cudaGetDeviceProperties: {err}")
    except ImportError:
        errors.append("cuda-python not installed")
    except Exception as e:  # cuda-python present but the driver library cannot be loaded
        errors.append(f"cuda-python: {type(e).__name__}: {e}")
    try:
        import torch

        if torch.cuda.is_available() and device < torch.cuda.device_count():
            major, minor = torch.cuda.get_device_capability(device)
            return torch.cuda.get_device_name(device), f"{major}.{minor}"
        errors.append("torch sees no CUDA device")
    except ImportError:
        errors.append("torch not installed")
    raise RuntimeError("no CUDA GPU found (" + "; ".join(errors) + ")")
