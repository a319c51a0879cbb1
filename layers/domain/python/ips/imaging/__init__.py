"""The compression engine: untrusted image bytes in, a metadata-free JPEG out (see `engine`).

`sniffing` says what the bytes are, `containers` walks the container before decoding (complete? too costly?),
`colour` brings the decoded pixels to sRGB or grey, `engine` runs the steps and encodes."""

from ips.imaging.engine import compress_image
from ips.imaging.model import REJECTION_CODES, CompressedImage, DecodeTimeUp, ImageLimits, ImageRejected

__all__ = ["REJECTION_CODES", "CompressedImage", "DecodeTimeUp", "ImageLimits", "ImageRejected", "compress_image"]
