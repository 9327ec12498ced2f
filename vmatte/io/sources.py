"""Frame sources: a video file (PyAV), a still image or a folder of images, yielding upright RGB frames."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import VmatteError
from ..ops.yuv import KR_KB, i420_to_rgb

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv", ".3gp"}
MAX_CONSECUTIVE_ERRORS = 50
ALPHA_FORMATS = ("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya8", "ya16")


@dataclass
class Frame:
    """One decoded frame: RGB uint8 [H,W,3], its index, and its timestamp when it came from a video.
    From VideoSource.frames_of(planar=True) a frame may instead carry the decoder's I420 planes
    `yuv` [H*3/2,W], with `rgb` None."""

    index: int
    rgb: np.ndarray | None
    pts: int | None = None
    time_base: Fraction | None = None
    name: str | None = None  # file stem for image sources, to name outputs
    yuv: np.ndarray | None = None
    alpha_in: np.ndarray | None = None  # the input's own alpha [H,W] uint8, when the video carries one


def source_kind(path: str | Path) -> str:
    """'folder', 'image' or 'video' for an input path (by type and extension)."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    return "image" if p.suffix.lower() in IMAGE_EXTS else "video"


def open_source(path: str | Path):
    """The right source for a path; raises VmatteError if it is missing."""
    p = Path(path)
    if not p.exists():
        raise VmatteError(f"input not found: {p}; check the path")
    kind = source_kind(p)
    return {"folder": FolderSource, "image": ImageSource, "video": VideoSource}[kind](p)


# AVColorSpace values a frame may be tagged with that both conversions know; anything else is guessed.
_KNOWN_MATRICES = frozenset(KR_KB)
BT709, BT601 = 1, 6  # AVCOL_SPC_BT709, AVCOL_SPC_SMPTE170M
_ACCURATE = None  # swscale flags, set on first use (PyAV is imported lazily)


def guess_matrix(width: int, height: int) -> int:
    """The YUV matrix players assume for an untagged video: BT.709 for HD, BT.601 for SD (mpv's rule)."""
    return BT709 if width >= 1280 or height > 576 else BT601


def frame_matrix(vf) -> int:
    """The YUV->RGB matrix of a decoded frame: its tag, else the HD/SD guess."""
    cs = int(vf.colorspace or 2)
    return cs if cs in _KNOWN_MATRICES else guess_matrix(vf.width, vf.height)


def _sws_matrix(cs: int) -> int:
    """AVColorSpace -> swscale's SWS_CS_* (the same number except SMPTE170M/BT470BG, both 601)."""
    return 5 if cs in (5, 6) else cs


def frame_to_array(vf, fmt: str = "rgb24") -> np.ndarray:
    """A decoded frame as RGB(A) uint8 using its real matrix (swscale alone would use BT.601 for
    untagged HD video, shifting its colours) and range. 8-bit 4:2:0 frames of even size go through
    OpenCV (vmatte.ops.yuv: a third of swscale's accurate time); others through swscale."""
    if fmt == "rgb24" and vf.format.name in ("yuv420p", "yuvj420p") and vf.width % 2 == 0 and vf.height % 2 == 0:
        full = vf.format.name == "yuvj420p" or int(vf.color_range or 0) == 2
        # The frame's own planes: asking PyAV for another format would run swscale (which may
        # also squeeze a full-range frame into 16-235 by its range tag).
        return i420_to_rgb(vf.to_ndarray(format=vf.format.name), frame_matrix(vf), full)
    return swscale_to_array(vf, fmt)


def swscale_to_array(vf, fmt: str = "rgb24") -> np.ndarray:
    """frame_to_array through swscale, for any layout: accurate rounding with full chroma
    interpolation (its fast 4:2:0 path darkens by about 1 level)."""
    global _ACCURATE
    if _ACCURATE is None:
        from av.video.reformatter import Interpolation as I

        _ACCURATE = I.BILINEAR | I.FULL_CHR_H_INT | I.ACCURATE_RND
    if vf.format.name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "gray", "ya")):
        return vf.to_ndarray(format=fmt)
    return vf.to_ndarray(format=fmt, src_colorspace=_sws_matrix(frame_matrix(vf)), interpolation=_ACCURATE)


def i420_planes(vf) -> np.ndarray | None:
    """The decoded frame's own I420 planes uint8 [H*3/2, W] when they can go to the GPU as they
    are (8-bit 4:2:0, limited range, the HD/SD matrix the GPU program assumes, upright, even
    size): a copy, no colour conversion on the host. None otherwise."""
    if vf.format.name != "yuv420p" or vf.width % 2 or vf.height % 2:
        return None
    if int(getattr(vf, "rotation", 0) or 0) or int(vf.color_range or 0) == 2:  # rotated, or full (JPEG) range
        return None
    if frame_matrix(vf) != guess_matrix(vf.width, vf.height):
        return None
    return vf.to_ndarray(format="yuv420p")


def rotate_upright(img: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, FFmpeg's convention)."""
    k = (int(round(rotation / 90.0)) % 4)
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


class VideoSource:
    """Decode a video file with PyAV into upright RGB frames, keeping each frame's pts.

    Attributes after __enter__: width, height (upright), rate, time_base, frames (count or 0 if
    unknown), frames_indexed (the count comes from the container index), duration (s or None), rotation, has_audio, skipped (corrupt packets skipped).
    A corrupt packet mid-stream is skipped with a warning; too many in a row is an error.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._container = None
        self.skipped = 0

    def __enter__(self) -> "VideoSource":
        import av

        if self.path.is_file() and self.path.stat().st_size == 0:
            raise VmatteError(f"{self.path} is empty (0 bytes); give a video or image file")
        try:
            self._container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise VmatteError(f"cannot open {self.path} as a video ({why}); it is not a video, or is truncated or "
                              "damaged: check the file or export it again") from None
        c = self._container
        if not c.streams.video:
            self.close()
            raise VmatteError(f"no video stream in {self.path}; give a video or image file")
        vs = c.streams.video[0]
        self._stream = vs
        vs.thread_type = "AUTO"
        self._decoder = vs.codec_context
        # WebM VP8/VP9 with alpha: FFmpeg's native decoders drop the alpha side channel, libvpx keeps it.
        if vs.codec_context.name in ("vp8", "vp9") and vs.metadata.get("alpha_mode") == "1":
            try:
                self._decoder = av.CodecContext.create("libvpx-vp9" if vs.codec_context.name == "vp9" else "libvpx", "r")
                if vs.codec_context.extradata:
                    self._decoder.extradata = vs.codec_context.extradata
            except Exception:  # libvpx missing: fall back to the native decoder (no alpha)
                self._decoder = vs.codec_context
        self.time_base = vs.time_base or Fraction(1, 1000)
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        self.rate = Fraction(rate) if rate else Fraction(30)
        self.frames = int(vs.frames or 0)
        self.frames_indexed = self.frames > 0  # counted by the container's index (mp4/mov), not estimated
        if not self.frames and vs.duration and vs.time_base:
            self.frames = int(round(float(vs.duration * vs.time_base * self.rate)))
        self.duration = float(vs.duration * vs.time_base) if vs.duration and vs.time_base else (
            c.duration / 1e6 if c.duration else None)
        self.has_audio = bool(c.streams.audio)
        self.rotation = 0  # degrees counter-clockwise; read from the first frame's display matrix
        self.width, self.height = vs.codec_context.width, vs.codec_context.height  # coded size
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the container (idempotent)."""
        if self._container is not None:
            c, self._container = self._container, None
            c.close()

    def _decoded(self) -> Iterator:
        import av

        c, vs, dec = self._container, self._stream, self._decoder
        bad = 0
        for packet in c.demux(vs):
            try:
                if dec is not vs.codec_context and not packet.size:
                    continue  # flush packet from demux: the separate decoder is flushed below
                frames = dec.decode(packet)
                bad = 0
            except av.error.FFmpegError as e:  # corrupt packet: skip it if the stream recovers
                bad += 1
                self.skipped += 1
                log.warning("skipping a corrupt packet at pts %s in %s: %s", packet.pts, self.path.name, e)
                if bad > MAX_CONSECUTIVE_ERRORS:
                    raise VmatteError(f"{self.path} is corrupt: {bad} packets in a row failed to decode "
                                      f"({e}); re-encode or re-download it") from None
                continue
            for f in frames:
                yield f
        if dec is not vs.codec_context:
            try:
                yield from dec.decode(None)
            except av.error.FFmpegError:
                pass

    def __iter__(self) -> Iterator[Frame]:
        return self.frames_of(planar=False)

    def frames_of(self, planar: bool = False) -> Iterator[Frame]:
        """Decoded frames in order. planar: a frame whose I420 planes can go to the GPU as they are
        (see i420_planes) comes with `yuv` set and `rgb` None; the others come as RGB."""
        if self._container is None:
            raise RuntimeError("use VideoSource inside a `with` block")
        i = 0
        for vf in self._decoded():
            if getattr(vf, "is_corrupt", False):
                log.warning("frame %d of %s is flagged corrupt; keeping it", i, self.path.name)
            rot = int(getattr(vf, "rotation", 0) or 0)
            if i == 0:
                self.rotation = rot
            planes = i420_planes(vf) if planar else None
            if planes is not None:
                yield Frame(i, None, vf.pts, vf.time_base or self.time_base, yuv=planes)
                i += 1
                continue
            if vf.format.name.startswith(ALPHA_FORMATS):
                arr = frame_to_array(vf, "rgba")
                rgb, alpha_in = np.ascontiguousarray(arr[..., :3]), arr[..., 3]
            else:
                rgb, alpha_in = frame_to_array(vf), None
            rgb = rotate_upright(rgb, rot)
            yield Frame(i, rgb, vf.pts, vf.time_base or self.time_base,
                        alpha_in=None if alpha_in is None else rotate_upright(alpha_in, rot))
            i += 1


def is_truncated_image(data: bytes) -> bool:
    """True for a JPEG or PNG cut short (an interrupted copy or download): OpenCV decodes those
    partly, grey below the cut, and says nothing. JPEG: no end marker after the last scan
    (scan data byte-stuffs 0xFF, so markers found there are real); PNG: no IEND after the last IDAT."""
    if data[:2] == b"\xff\xd8":
        sos = data.rfind(b"\xff\xda")
        return sos < 0 or data.find(b"\xff\xd9", sos) < 0
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data.rfind(b"IEND") < data.rfind(b"IDAT")
    return False


def read_image(path: Path) -> np.ndarray:
    """Read an image as upright RGB uint8 (EXIF orientation applied by OpenCV)."""
    raw = Path(path).read_bytes()
    data = np.frombuffer(raw, dtype=np.uint8)
    if is_truncated_image(raw):
        raise VmatteError(f"image {path} is truncated (the file ends before the image does); copy or export it again")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise VmatteError(f"cannot read image {path}: not a readable jpg/png/webp/bmp/tif; check the file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ImageSource:
    """A single still image as one frame."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.frames = 1
        self.rate, self.time_base, self.has_audio, self.rotation = Fraction(1), None, False, 0

    def __enter__(self) -> "ImageSource":
        self._rgb = read_image(self.path)
        self.height, self.width = self._rgb.shape[:2]
        return self

    def __exit__(self, *exc) -> None:
        self._rgb = None

    def close(self) -> None:
        self._rgb = None

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, self._rgb, name=self.path.stem)


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


class FolderSource:
    """The images in a folder (natural sort order), one frame each; sizes may differ."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rate, self.time_base, self.has_audio, self.rotation = Fraction(30), None, False, 0

    def __enter__(self) -> "FolderSource":
        self.files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                             and not p.name.startswith(".")), key=_natural_key)
        if not self.files:
            raise VmatteError(f"no images (jpg/png/webp/bmp/tif) in folder {self.path}; check the folder")
        self.frames = len(self.files)
        return self

    def __exit__(self, *exc) -> None:
        pass

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.files):
            yield Frame(i, read_image(p), name=p.stem)
