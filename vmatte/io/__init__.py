"""Frame sources (video files, images, image folders) and sinks (video files, images, PNG folders).

All are context managers that open lazily, flush and close exactly once; file sinks write to a
temporary name beside the output and rename it into place only on success.
"""
from .sinks import FolderSink, ImageSink, VideoSink, open_sink, sink_kind
from .sources import FolderSource, Frame, ImageSource, VideoSource, open_source, source_kind

__all__ = [
    "Frame",
    "VideoSource",
    "ImageSource",
    "FolderSource",
    "open_source",
    "source_kind",
    "VideoSink",
    "ImageSink",
    "FolderSink",
    "open_sink",
    "sink_kind",
]
