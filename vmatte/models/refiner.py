"""Border refiner: re-predicts a fixed budget of 64x64 patches along the subject's border at full
resolution and pastes them back. Patch choice, gather and paste are tensor ops (TopK, Gather,
ScatterElements) so the whole module exports to ONNX/TensorRT with no Python control flow."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.patches import PATCH, SCORE_SAMPLES  # the cell side and score samples, shared with the host refiner
from .layers import ConvBNReLU, normalize_rgb


@dataclass(frozen=True)
class RefinerConfig:
    patches: int = 32  # fixed patch budget per image (static shapes for export)
    context: int = 4  # extra pixels each side that the net sees around a patch
    widths: tuple[int, int] = (8, 16)
    deep: bool = False


def _unpadded(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run `block` (a conv, or nested Sequentials of conv/BN/ReLU) with every conv unpadded: each
    3x3 conv then trims one pixel a side instead of reading zeros past the window's edge."""
    if isinstance(block, nn.Conv2d):
        return F.conv2d(x, block.weight, block.bias, block.stride, 0, block.dilation, block.groups)
    if isinstance(block, nn.Sequential):
        for layer in block:
            x = _unpadded(layer, x)
        return x
    return block(x)


class RefinerNet(nn.Module):
    """Small encoder-decoder on [N,4,S,S] (image ⊕ upsampled coarse alpha) -> alpha correction.
    The decoder fuses the half-resolution context through a 1x1 conv (cheap at full resolution)."""

    def __init__(self, widths: tuple[int, int], deep: bool = False):
        super().__init__()
        a, b = widths
        self.enc1 = nn.Sequential(ConvBNReLU(4, a), *([ConvBNReLU(a, a)] if deep else []))
        self.enc2 = nn.Sequential(ConvBNReLU(a, b, stride=2), *([ConvBNReLU(b, b)] if deep else []), ConvBNReLU(b, b, dilation=2))
        self.lift = ConvBNReLU(b, a, k=1, act=False)
        self.dec = nn.Sequential(*([ConvBNReLU(a, a)] if deep else []), ConvBNReLU(a, a))
        self.head = nn.Conv2d(a, 1, 3, padding=1)

    def trailing_convs(self) -> int:
        """Pixels each side the convs after the fuse (decoder + head) reach: what running them
        unpadded trims (one per 3x3 conv)."""
        convs = [m for m in self.dec.modules() if isinstance(m, nn.Conv2d)] + [self.head]
        if any(c.stride != (1, 1) for c in convs):
            raise ValueError("the refiner's decoder convs must have stride 1 to run unpadded")
        return sum((c.kernel_size[0] - 1) // 2 * c.dilation[0] for c in convs)

    def forward(self, x: torch.Tensor, crop: int = 0) -> torch.Tensor:
        """x [N,4,S,S] -> correction [N,1,S-2*crop,S-2*crop]: only the centre when crop > 0.
        The decoder and head then run unpadded on the centre plus their reach, which gives the
        same centre as the padded [N,1,S,S] output (the centre never reads the zero padding) for
        less work; exactly so in eval mode (in training the decoder's BatchNorm statistics come
        from the centre). A crop under trailing_convs() crops the padded output instead."""
        e1 = self.enc1(x)  # [N,a,S,S]
        e2 = self.enc2(e1)  # [N,b,S/2,S/2]
        u = F.interpolate(self.lift(e2), size=e1.shape[2:], mode="bilinear", align_corners=False)
        S, m = x.shape[-1], crop - self.trailing_convs()
        if crop <= 0 or m < 0:
            out = self.head(self.dec(torch.relu(u + e1)))
            return out[..., crop : S - crop, crop : S - crop] if crop > 0 else out
        f = torch.relu(u + e1)[..., m : S - m, m : S - m]  # [N,a,S-2m,S-2m]
        return _unpadded(self.head, _unpadded(self.dec, f))




def patch_scores(alpha_up: torch.Tensor) -> torch.Tensor:
    """Border score of every 64x64 grid cell: mean of 4a(1-a). [B,1,H,W] -> [B, H/64 * W/64]."""
    u = 4.0 * alpha_up * (1.0 - alpha_up)
    return F.avg_pool2d(u, PATCH, PATCH).flatten(1)


def cell_scores(coarse: torch.Tensor, gh: int, gw: int, samples: int = SCORE_SAMPLES) -> torch.Tensor:
    """patch_scores of the bilinearly upsampled coarse alpha, sampled at `samples`^2 points a cell
    instead of all 4096 pixels: the same interpolant, so
    nearly the same scores, without scoring the full-resolution frame (the samples are the centres of
    the cell's (64/samples)-pixel blocks). [B,1,h,w] -> [B, gh*gw]."""
    a = F.interpolate(coarse, size=(gh * samples, gw * samples), mode="bilinear", align_corners=False)
    return F.avg_pool2d(4.0 * a * (1.0 - a), samples, samples).flatten(1)


def select_cells(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B,k] of the k highest-scoring cells. When the grid has fewer than k cells the
    surplus picks repeat the last cell (identical inputs give identical pastes)."""
    n = scores.shape[1]
    pad = torch.full((scores.shape[0], k), -1.0, dtype=scores.dtype, device=scores.device)
    idx = torch.topk(torch.cat([scores, pad], 1), k, dim=1).indices  # [B,k]
    return torch.clamp(idx, max=n - 1)


def _window_rows(y0: torch.Tensor, size: int, offset: int, limit: int) -> torch.Tensor:
    """Row (or column) indices [B,K,size] of windows starting at y0 - offset, clamped to
    [0, limit-1]: replicate padding at the image border without copying the image."""
    ar = torch.arange(size, device=y0.device, dtype=y0.dtype) - offset
    return torch.clamp(y0.unsqueeze(-1) + ar, 0, limit - 1)


def gather_windows(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Windows of x [B,C,H,W] at rows/cols [B,K,S] -> [B*K,C,S,S] (one GatherElements, no copy of x)."""
    B, C, H, W = x.shape
    K, S = rows.shape[1], rows.shape[2]
    flat = (rows.unsqueeze(-1) * W + cols.unsqueeze(-2)).reshape(B, 1, -1)  # [B,1,K*S*S]
    win = torch.gather(x.reshape(B, C, -1), 2, flat.expand(-1, C, -1))  # [B,C,K*S*S]
    return win.reshape(B, C, K, S, S).transpose(1, 2).reshape(-1, C, S, S)


class PatchRefiner(nn.Module):
    """The refiner's patch net alone, as a module to export (`refiner_patches.onnx`): onnxruntime
    on a CPU runs it on windows that the host gathers and pastes (vmatte.ops.patches), which costs
    less there than the whole-frame graph's upsample, gather, scatter and layout reorders."""

    def __init__(self, refiner: "Refiner"):
        super().__init__()
        self.refiner = refiner

    def forward(self, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return self.refiner.refine_windows(image, alpha)


class Refiner(nn.Module):
    """Inputs: full-resolution image [B,3,H,W] in [0,1] (H, W multiples of 64) and the coarse alpha
    [B,1,h,w]. Output: alpha [B,1,H,W]: the bilinearly upsampled coarse alpha with the `patches`
    most uncertain 64x64 cells re-predicted (the caller pads frames to whole cells). onnxruntime on a
    CPU runs the same steps around the exported patch net instead (vmatte.ops.patches)."""

    def __init__(self, cfg: RefinerConfig = RefinerConfig()):
        super().__init__()
        self.cfg = cfg
        self.net = RefinerNet(cfg.widths, cfg.deep)

    def refine_windows(self, img: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """The patch net on gathered windows: image [N,3,S,S] in [0,1] and upsampled alpha
        [N,1,S,S] (S = 64 + 2*context) -> refined alpha of the window centres [N,1,64,64]."""
        P = self.cfg.context
        delta = self.net(torch.cat([normalize_rgb(img), base], 1), crop=P)  # [N,1,64,64]
        return torch.clamp(base[:, :, P : P + PATCH, P : P + PATCH] + delta, 0.0, 1.0)

    def forward(self, image: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        B, C, H, W = image.shape
        up = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)  # [B,1,H,W]
        if self.cfg.patches <= 0:
            return up
        P, S = self.cfg.context, PATCH + 2 * self.cfg.context
        gh, gw = H // PATCH, W // PATCH
        # Scores in float32 even in FP16 engines, so every precision refines the same cells.
        idx = select_cells(cell_scores(coarse.float(), gh, gw), self.cfg.patches)  # [B,K]
        y0 = torch.div(idx, gw, rounding_mode="floor") * PATCH
        x0 = (idx % gw) * PATCH
        # S x S windows (patch plus context, edge-replicated) of the image and the upsampled alpha.
        rows, cols = _window_rows(y0, S, P, H), _window_rows(x0, S, P, W)  # [B,K,S]
        img = gather_windows(image, rows, cols)  # [B*K,3,S,S]
        base = gather_windows(up, rows, cols)  # [B*K,1,S,S]
        new = self.refine_windows(img, base)  # [B*K,1,64,64]
        # Paste the refined cells back (cells are disjoint, so the scatter is order-free).
        prow, pcol = _window_rows(y0, PATCH, 0, H), _window_rows(x0, PATCH, 0, W)
        pidx = (prow.unsqueeze(-1) * W + pcol.unsqueeze(-2)).reshape(B, -1)  # [B,K*64*64]
        out = up.reshape(B, -1).scatter(1, pidx, new.reshape(B, -1))
        return out.reshape(B, 1, H, W)
