"""The compression engine: untrusted image bytes in, a metadata-free JPEG out (see `engine`).

`sniffing` says what the bytes are, `containers` walks the container before decoding (complete? too costly?),
`colour` brings the decoded pixels to sRGB or grey, `engine` runs the steps and encodes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ips.shared.imaging.model import REJECTION_CODES, CompressedImage, ImageLimits, ImageRejected, OutOfTime

if TYPE_CHECKING:
    from ips.shared.imaging.engine import compress_image


def __getattr__(name: str) -> Any:
    # The engine (and Pillow) only when something compresses: settings read ImageLimits in every function, and
    # the status, secret and notify functions never decode.
    if name == "compress_image":
        from ips.shared.imaging.engine import compress_image

        return compress_image
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["REJECTION_CODES", "CompressedImage", "ImageLimits", "ImageRejected", "OutOfTime", "compress_image"]
