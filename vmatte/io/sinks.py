"""Frame sinks: video files (H.264 / ProRes 4444 / VP9 with alpha), single images, PNG folders.

Every sink is atomic: it writes to a hidden temporary name beside the output (``.name.partial.ext``)
and renames it into place only when the `with` block ends without an error; on an error or Ctrl-C
the temporary file is removed. An existing output is never replaced unless overwrite=True.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import VmatteError
from ..ops.compose import pad_to_even
from ..ops.yuv import rgb_to_i420
from .sources import BT601, guess_matrix

log = logging.getLogger(__name__)

VIDEO_OUT_EXTS = {".mp4", ".m4v", ".mov", ".webm", ".mkv"}
IMAGE_OUT_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
ALPHA_EXTS = {".mov", ".webm", ".png", ".webp", ".tif", ".tiff"}  # plus folders (PNG)
# Audio codecs each container takes as they are; others are re-encoded.
_AUDIO_COPY = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s24le", "pcm_f32le"},
    ".webm": {"opus", "vorbis"},
    ".mkv": None,  # anything
}


def sink_kind(path: str | Path) -> str:
    """'video', 'image' or 'folder' for an output path, from its extension (no extension: folder)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in VIDEO_OUT_EXTS:
        return "video"
    if ext in IMAGE_OUT_EXTS:
        return "image"
    if not ext or p.is_dir():
        return "folder"
    raise VmatteError(f"unknown output type {ext!r} for {p}; use .mp4, .mov, .webm, .mkv, .png, .jpg or a folder")


def supports_alpha(path: str | Path) -> bool:
    """Whether the output format stores a real alpha channel."""
    return sink_kind(path) == "folder" or Path(path).suffix.lower() in ALPHA_EXTS


def check_output(output: str | Path, overwrite: bool, input: str | Path | None = None) -> Path:
    """Validate an output path before any work: not the input, not existing (unless overwrite), writable."""
    out = Path(output)
    if input is not None:
        inp = Path(input)
        if out.resolve() == inp.resolve() or (out.exists() and inp.exists() and os.path.samefile(out, inp)):
            raise VmatteError(f"output {out} is the input file; choose another output name")
    if out.exists() and not overwrite:
        raise VmatteError(f"output {out} already exists; pass --overwrite (overwrite=True) to replace it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise VmatteError(f"output folder {parent} does not exist; create it first")
    _probe_writable(parent)
    return out


def _probe_writable(folder: Path) -> None:
    """Create and remove a file in `folder`: os.access says yes to root even where writing fails (/proc)."""
    probe = folder / f".vmatte-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        raise VmatteError(f"cannot write to {folder} ({e.strerror or e}); choose a writable output folder") from None


def write_error(path: Path, e: OSError) -> VmatteError:
    """The user-facing error for an OS failure while writing `path` (disk full, folder removed, ...)."""
    return VmatteError(f"writing {path} failed ({e.strerror or e}); check the free space and permissions "
                       f"of {Path(path).resolve().parent}")


def _partial(path: Path) -> Path:
    """Hidden temporary name beside `path` that keeps its extension (so the muxer guesses the format)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def partial_path(path: str | Path) -> Path:
    """Where the sink for `path` writes until it is complete: a batch removes it after a worker
    died mid-file (a killed process cleans nothing up itself)."""
    p = Path(path)
    return p.with_name(f".{p.name}.partial") if sink_kind(p) == "folder" else _partial(p)


# grey 0..255 -> limited-range luma 16..235: the Y of (g, g, g) in every YCbCr matrix (its
# coefficients sum to 1), so a grey frame is I420 with this Y and flat 128 chroma.
_GREY_TO_Y = np.round(16 + np.arange(256) * (219 / 255)).astype(np.uint8)


def grey_to_i420(grey: np.ndarray) -> np.ndarray:
    """Grey uint8 [H,W] (even H, W) -> limited-range I420 planes uint8 [H*3/2, W]. Why: an alpha
    matte written to H.264 would otherwise be widened to RGB (3x the bytes) and colour-converted
    by swscale on the host, a third of the GPU route's frame time for alpha outputs."""
    h, w = grey.shape
    out = np.empty((h * 3 // 2, w), np.uint8)
    np.take(_GREY_TO_Y, grey, out=out[:h])
    out[h:] = 128
    return out


def i420_frame(planes: np.ndarray, matrix: int):
    """An av.VideoFrame (yuv420p) of limited-range I420 planes uint8 [H*3/2, W] in YUV `matrix`."""
    import av

    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    frame.colorspace = matrix
    frame.color_range = 1
    return frame


def _as_rgb_or_rgba(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:  # grey (an alpha matte)
        return np.repeat(img[..., None], 3, axis=2)
    return img


class _AtomicSink:
    """Base: validates the target, finishes (commit) or aborts exactly once."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self._state = "new"  # new -> open -> closed
        self.frames = 0

    def __enter__(self):
        check_output(self.path, self.overwrite)
        self._state = "open"
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        """Flush, close and move the result into place (once)."""
        if self._state != "open":
            return
        self._state = "closed"
        try:
            self._finish()
        except OSError as e:
            self._cleanup()
            raise write_error(self.path, e) from None
        except BaseException:
            self._cleanup()
            raise

    def abort(self) -> None:
        """Drop everything written so far (once)."""
        if self._state != "open":
            return
        self._state = "closed"
        self._cleanup()

    def _finish(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cleanup(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class VideoSink(_AtomicSink):
    """Encode frames into a video file with PyAV; optionally carry the audio of another file.

    .mp4/.m4v/.mkv: H.264 yuv420p (no alpha). .mov: ProRes (4444 with yuva444p10le when alpha=True,
    422 HQ otherwise). .webm: VP9 (yuva420p when alpha=True). Odd sizes are padded by one pixel.
    write() takes RGB [H,W,3], RGBA [H,W,4] or grey [H,W] uint8 and the source pts/time_base.
    """

    def __init__(self, path: str | Path, *, rate: Fraction | float = 30, time_base: Fraction | None = None,
                 alpha: bool = False, audio_from: str | Path | None = None, overwrite: bool = False,
                 crf: int | None = None, preset: str = "veryfast", hw_encode: bool = False):
        super().__init__(path, overwrite)
        self.ext = self.path.suffix.lower()
        if self.ext not in VIDEO_OUT_EXTS:
            raise VmatteError(f"{self.path} is not a video output; use .mp4, .mov, .webm or .mkv")
        if alpha and self.ext not in (".mov", ".webm"):
            raise VmatteError(f"{self.ext} cannot store alpha; write .mov (ProRes 4444) or .webm (VP9) instead")
        self.rate = Fraction(rate).limit_denominator(1001000)
        self.time_base = time_base or (1 / self.rate)
        self.alpha = alpha
        self.audio_from = Path(audio_from) if audio_from else None
        self.crf, self.preset = crf, preset
        self.hw_encode = hw_encode  # H.264 on NVENC when the GPU has it (falls back to libx264)
        self.codec: str | None = None  # the encoder in use, once the first frame opened it
        self.tmp = _partial(self.path)
        self._out = None
        self._last_pts = None
        self._ain = None

    # -- opening ------------------------------------------------------------------------------
    def _open(self, width: int, height: int) -> None:
        import av

        if os.path.exists(self.tmp):
            os.remove(self.tmp)  # leftover of a killed run
        if self.ext == ".mov":
            choices = [("prores_ks", "yuva444p10le" if self.alpha else "yuv422p10le",
                        {"profile": "4" if self.alpha else "3", "vendor": "apl0"})]
        elif self.ext == ".webm":
            choices = [("libvpx-vp9", "yuva420p" if self.alpha else "yuv420p",
                        {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": str(self.crf or 30), "b": "0"})]
        else:
            choices = [("libx264", "yuv420p", {"crf": str(self.crf or 18), "preset": self.preset})]
            if self.hw_encode:  # constant-quality VBR, about libx264's CRF on the same number
                choices.insert(0, ("h264_nvenc", "yuv420p", {"preset": "p4", "rc": "vbr", "cq": str(self.crf or 19), "b": "0"}))
        # Convert and tag explicitly (limited range, BT.709 for HD, BT.601 for SD): left alone,
        # swscale writes BT.601 untagged, which players show colour-shifted for HD video.
        self._matrix = guess_matrix(width, height)
        for k, (codec, pix, opts) in enumerate(choices):
            self._out = av.open(str(self.tmp), "w")
            if k == len(choices) - 1:  # the software encoder: its errors surface on the first frame
                self._vs = self._add_video(codec, pix, opts, width, height)
                break
            try:  # a GPU encoder fails here when the GPU, driver or FFmpeg build lacks it
                self._vs = self._add_video(codec, pix, opts, width, height)
                self._vs.codec_context.open()
                break
            except Exception as e:  # noqa: BLE001 - fall back to the next encoder
                log.info("encoder %s unavailable (%s); using %s", codec, e, choices[k + 1][0])
                self._out.close()
        self.codec = codec
        if self.audio_from is not None:
            try:
                self._open_audio()
            except Exception as e:  # audio is a bonus: never lose the video over it
                log.warning("could not carry the audio of %s (%s); writing video only", self.audio_from.name, e)
                self._close_audio()

    def _add_video(self, codec: str, pix: str, opts: dict, width: int, height: int):
        """Add the video stream, tagged with this sink's matrix, limited range and time base."""
        vs = self._out.add_stream(codec, rate=self.rate, options=opts)
        vs.width, vs.height, vs.pix_fmt = width, height, pix
        cc = vs.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = self._matrix
        cc.color_range = 1  # AVCOL_RANGE_MPEG
        vs.time_base = self.time_base
        cc.time_base = self.time_base
        vs.thread_type = "AUTO"
        return vs

    def _open_audio(self) -> None:
        import av

        src = av.open(str(self.audio_from), metadata_errors="ignore")
        if not src.streams.audio:
            src.close()
            return
        ain = src.streams.audio[0]
        self._asrc, self._ain = src, ain
        allowed = _AUDIO_COPY.get(self.ext)
        name = ain.codec_context.name
        if allowed is None or name in allowed:
            self._aout = self._out.add_stream_from_template(ain)
            self._acopy = True
            log.info("copying %s audio into %s", name, self.path.name)
        else:
            enc = "libopus" if self.ext == ".webm" else "aac"
            rate = 48000 if enc == "libopus" else (ain.rate or 48000)
            self._aout = self._out.add_stream(enc, rate=rate)
            self._aout.layout = "stereo" if ain.channels >= 2 else "mono"
            self._acopy = False
            log.info("re-encoding %s audio to %s for %s", name, enc, self.path.name)
        self._apackets = src.demux(ain)

    def _close_audio(self) -> None:
        if getattr(self, "_asrc", None) is not None:
            self._asrc.close()
        self._asrc, self._ain = None, None

    def _pump_audio(self, until: float | None) -> None:
        """Mux audio packets up to `until` seconds (None: all) so audio and video interleave."""
        if self._ain is None:
            return
        import av

        for pkt in self._apackets:
            if pkt.dts is None and pkt.pts is None:
                continue  # demuxer's flush packet; the encoder is flushed once below
            if self._acopy:
                pkt.stream = self._aout
                self._out.mux(pkt)
            else:
                try:
                    for fr in pkt.decode():
                        self._encode_audio(fr)
                except av.error.FFmpegError as e:
                    log.warning("skipping a corrupt audio packet: %s", e)
            if until is not None and pkt.pts is not None and pkt.time_base and pkt.pts * pkt.time_base > until:
                return
        if until is None:
            if not self._acopy:
                self._encode_audio(None)
            self._close_audio()

    def _encode_audio(self, frame) -> None:
        if frame is not None:
            frame.pts = None  # the encoder's resampler re-times samples contiguously
        for p in self._aout.encode(frame):
            self._out.mux(p)

    # -- writing ------------------------------------------------------------------------------
    def write(self, img: np.ndarray, pts: int | None = None, time_base: Fraction | None = None) -> None:
        """Encode one frame; pts in `time_base` (default: this sink's), else the next frame index."""
        import av

        if self._state != "open":
            raise RuntimeError("VideoSink.write outside its `with` block")
        if img.ndim == 2 and img.dtype == np.uint8 and self.takes_i420(img.shape[1], img.shape[0]):  # grey: no RGB round trip
            return self.write_i420(grey_to_i420(img), pts, time_base)
        if img.dtype != np.uint8:
            raise ValueError(f"VideoSink.write takes uint8 frames; got {img.dtype} (convert with np.clip(x, 0, 255).astype(np.uint8))")
        img = _as_rgb_or_rgba(img)
        if self.alpha and img.shape[2] == 3:
            img = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
        elif not self.alpha and img.shape[2] == 4:
            img = np.ascontiguousarray(img[..., :3])
        h, w = img.shape[:2]
        if self._out is None and (h % 2 or w % 2):
            log.info("%dx%d has an odd side; padding to %dx%d by repeating the edge (the encoder needs even sizes)",
                     w, h, w + w % 2, h + h % 2)
        img = pad_to_even(img)
        self._open_for(img.shape[1], img.shape[0])
        if img.shape[2] == 3 and self._vs.pix_fmt == "yuv420p":  # OpenCV converts for less time than swscale
            return self._encode(i420_frame(rgb_to_i420(img, self._matrix), self._matrix), pts, time_base)
        frame = av.VideoFrame.from_ndarray(img, format="rgba" if img.shape[2] == 4 else "rgb24")
        frame = frame.reformat(format=self._vs.pix_fmt, dst_colorspace=5 if self._matrix == BT601 else self._matrix,
                               dst_color_range=1, dst_color_primaries=self._matrix, dst_color_trc=self._matrix)
        self._encode(frame, pts, time_base)

    def takes_i420(self, width: int, height: int) -> bool:
        """Whether write_i420 can take frames of this size: an encoder fed yuv420p (H.264, VP9
        without alpha) and an even size, so no colour conversion is left to the host."""
        return not self.alpha and self.ext != ".mov" and width % 2 == 0 and height % 2 == 0

    def write_i420(self, planes: np.ndarray, pts: int | None = None, time_base: Fraction | None = None) -> None:
        """Encode one frame given as limited-range I420 planes uint8 [H*3/2, W] in the HD/SD
        matrix of its size (what vmatte.gpu_runner.MattingProgram writes); see takes_i420."""
        if self._state != "open":
            raise RuntimeError("VideoSink.write_i420 outside its `with` block")
        h, w = planes.shape[0] * 2 // 3, planes.shape[1]
        if not self.takes_i420(w, h) or planes.shape[0] != h * 3 // 2:
            raise VmatteError(f"{self.path.name} cannot take I420 frames of {w}x{h}; this is a bug in the caller")
        self._open_for(w, h)
        self._encode(i420_frame(planes, self._matrix), pts, time_base)

    def _open_for(self, w: int, h: int) -> None:
        """Open the encoder at the first frame's (even) size; later frames must keep it."""
        if self._out is None:
            self._open(w, h)
        if (w, h) != (self._vs.width, self._vs.height):
            raise VmatteError(f"frame size {w}x{h} changed mid-video "
                              f"(was {self._vs.width}x{self._vs.height}); write to a folder instead")

    def _encode(self, frame, pts: int | None, time_base: Fraction | None) -> None:
        """Time-stamp (pts in `time_base`, else the next frame index), encode and mux one frame."""
        tb = self.time_base
        if pts is None:
            pts = round(self.frames / self.rate / tb)
        elif time_base is not None and time_base != tb:
            pts = round(pts * time_base / tb)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # keep pts strictly increasing (duplicate timestamps)
        self._last_pts = pts
        frame.pts, frame.time_base = pts, tb
        for p in self._vs.encode(frame):
            self._out.mux(p)
        self.frames += 1
        self._pump_audio(float(pts * tb) + 0.5)

    def _finish(self) -> None:
        if self._out is None:
            raise VmatteError(f"no frames were written to {self.path}; the input had no decodable frames")
        for p in self._vs.encode(None):
            self._out.mux(p)
        self._pump_audio(None)
        out, self._out = self._out, None
        out.close()
        os.replace(self.tmp, self.path)

    def _cleanup(self) -> None:
        self._close_audio()
        if self._out is not None:
            out, self._out = self._out, None
            try:
                out.close()
            except Exception:
                pass
        if self.tmp.exists():
            self.tmp.unlink()


def _encode_image(path_ext: str, img: np.ndarray) -> bytes:
    """RGB/RGBA/grey uint8 -> encoded bytes for the extension."""
    if img.ndim == 3 and img.shape[2] == 4:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    elif img.ndim == 3:
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    else:
        bgr = img
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if path_ext == ".png" else (
        [cv2.IMWRITE_JPEG_QUALITY, 95] if path_ext in (".jpg", ".jpeg") else [])
    ok, buf = cv2.imencode(path_ext, bgr, params)
    if not ok:
        raise VmatteError(f"could not encode a {path_ext} image; use .png or .jpg")
    return buf.tobytes()


class ImageSink(_AtomicSink):
    """One still image (png/webp/tif keep alpha; jpg takes RGB only)."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        super().__init__(path, overwrite)
        self.ext = self.path.suffix.lower()
        self.tmp = _partial(self.path)
        self._data = None

    def write(self, img: np.ndarray, pts=None, time_base=None, name: str | None = None) -> None:
        if self._data is not None:
            raise VmatteError(f"{self.path} is a single image but the input has several frames; write a folder")
        if img.ndim == 3 and img.shape[2] == 4 and self.ext in (".jpg", ".jpeg", ".bmp"):
            raise VmatteError(f"{self.ext} cannot store transparency; write .png instead")
        self._data = _encode_image(self.ext, img)
        self.frames = 1

    def _finish(self) -> None:
        if self._data is None:
            raise VmatteError(f"no image was written to {self.path}")
        self.tmp.write_bytes(self._data)
        os.replace(self.tmp, self.path)

    def _cleanup(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()


class FolderSink(_AtomicSink):
    """A folder of PNG files (RGBA when the frames have alpha), named after the input or numbered."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        super().__init__(path, overwrite)
        self.tmp = partial_path(self.path)

    def __enter__(self):
        super().__enter__()
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return self

    def write(self, img: np.ndarray, pts=None, time_base=None, name: str | None = None) -> None:
        fname = f"{name}.png" if name else f"frame_{self.frames:06d}.png"
        (self.tmp / fname).write_bytes(_encode_image(".png", img))
        self.frames += 1

    def _finish(self) -> None:
        old = None
        if self.path.exists():  # overwrite=True was checked on enter
            old = self.path.with_name(f".{self.path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()

    def _cleanup(self) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)


def open_sink(path: str | Path, *, alpha: bool = False, rate: Fraction | float = 30,
              time_base: Fraction | None = None, audio_from: str | Path | None = None, overwrite: bool = False):
    """The right sink for an output path's extension (not yet entered)."""
    kind = sink_kind(path)
    if kind == "video":
        return VideoSink(path, rate=rate, time_base=time_base, alpha=alpha, audio_from=audio_from, overwrite=overwrite)
    if kind == "image":
        return ImageSink(path, overwrite=overwrite)
    return FolderSink(path, overwrite=overwrite)
