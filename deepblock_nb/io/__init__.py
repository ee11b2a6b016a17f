"""Images and annotation files: bounded-memory image sources, format readers/writers."""

from deepblock_nb.io.images import (
    SUPPORTED_FORMATS,
    ImageInfo,
    ImageSource,
    clear_tile_cache,
    detect_format,
    open_image,
    probe_image,
    set_tile_cache_bytes,
)

__all__ = [
    "SUPPORTED_FORMATS",
    "ImageInfo",
    "ImageSource",
    "clear_tile_cache",
    "detect_format",
    "open_image",
    "probe_image",
    "set_tile_cache_bytes",
]
