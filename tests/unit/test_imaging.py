"""The compression engine (ips.shared.imaging) against the real photos shipped in samples/images and synthetic images.

samples/images/MANIFEST.tsv says where each photo came from and how a derived one was made; every other image is
generated here."""

from __future__ import annotations

import csv
import io
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageCms, ImageFile, ImageOps, ImageStat, WebPImagePlugin

from ips.shared.imaging import CompressedImage, ImageLimits, ImageRejected, compress_image

CORPUS = Path(__file__).resolve().parents[2] / "samples" / "images"
MANIFEST = list(csv.DictReader((CORPUS / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t"))
WHITE = (255, 255, 255)
METADATA_MARKERS = {*range(0xE1, 0xF0), 0xFE}  # APP1..APP15 and COM


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# --- helpers ------------------------------------------------------------------------------------------


def jpeg_markers(data: bytes) -> list[int]:
    """Every marker of a JPEG stream, SOI to EOI, found independently of the code under test."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    markers, pos = [0xD8], 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"expected a marker at {pos}"
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        markers.append(marker)
        if marker == 0xD9:
            return markers
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xDA:  # entropy-coded data runs to the next 0xFF that is not stuffing or a restart
            while True:
                pos = data.index(b"\xff", pos)
                following = data[pos + 1]
                if following == 0 or 0xD0 <= following <= 0xD7:
                    pos += 2
                elif following == 0xFF:
                    pos += 1
                else:
                    break
    raise AssertionError("JPEG has no EOI")


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def encode_jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def reference_jpeg(image: Image.Image, quality: int = 50) -> bytes:
    """What compress_image must produce for pixels that need no change: plain optimised JPEG, no metadata."""
    return encode_jpeg(image, quality=quality, optimize=True, comment=b"")


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def mad(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255."""
    assert a.size == b.size and a.mode == b.mode
    means = ImageStat.Stat(ImageChops.difference(a, b)).mean
    return sum(means) / len(means)


def close(pixel: tuple[int, ...] | int, expected: tuple[int, ...] | int, tolerance: int) -> bool:
    pixel_t = pixel if isinstance(pixel, tuple) else (pixel,)
    expected_t = expected if isinstance(expected, tuple) else (expected,)
    return len(pixel_t) == len(expected_t) and all(
        abs(p - e) <= tolerance for p, e in zip(pixel_t, expected_t, strict=True)
    )


def assert_clean_jpeg(result: CompressedImage, *, allowed: frozenset[int] = frozenset()) -> Image.Image:
    """Valid JPEG, consistent sizes, and no metadata: no APP1..APP15 (except `allowed`), no COM."""
    assert result.output_bytes == len(result.data)
    markers = jpeg_markers(result.data)
    assert not (set(markers) & METADATA_MARKERS) - allowed, [hex(m) for m in markers]
    image = decode(result.data)
    assert image.format == "JPEG"
    assert image.size == (result.width, result.height)
    for key in ("exif", "icc_profile", "xmp", "comment"):
        assert key not in image.info, key
    assert len(image.getexif()) == 0
    return image


def gradient(size: tuple[int, int] = (256, 128)) -> Image.Image:
    """A smooth, deterministic RGB picture (re-encoding one at q95 makes a much smaller q50 JPEG)."""
    w, h = size
    r = Image.linear_gradient("L").resize(size)
    g = r.transpose(Image.Transpose.ROTATE_90).resize(size)
    b = Image.radial_gradient("L").resize(size)
    assert (w, h) == r.size
    return Image.merge("RGB", (r, g, b))


def quadrants(block: int = 32) -> Image.Image:
    """3x2 blocks of distinct flat colours: every EXIF orientation gives a different picture."""
    colours = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (240, 240, 20), (20, 220, 220), (200, 20, 200)]
    image = Image.new("RGB", (3 * block, 2 * block))
    for i, colour in enumerate(colours):
        x, y = (i % 3) * block, (i // 3) * block
        image.paste(colour, (x, y, x + block, y + block))
    return image


def exif_bytes(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian EXIF APP1 payload with one IFD of raw (tag, type, count, 4-byte value) entries."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def with_exif(jpeg: bytes, payload: bytes) -> bytes:
    return jpeg[:2] + segment(0xE1, payload) + jpeg[2:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw_rows))
        + png_chunk(b"IEND", b"")
    )


def rejected(data: bytes, **kwargs: object) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        compress_image(data, **kwargs)  # type: ignore[arg-type]
    return info.value


# --- the corpus --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", MANIFEST, ids=[row["file"] for row in MANIFEST])
def test_every_corpus_image_becomes_a_clean_jpeg(row: dict[str, str]) -> None:
    data = corpus(row["file"])
    result = compress_image(data)

    assert result.input_format == row["format"]
    assert result.input_bytes == len(data) == int(row["bytes"])
    width, height = int(row["width"]), int(row["height"])
    if row["exif_orientation"] in {"5", "6", "7", "8"}:
        width, height = height, width
    assert (result.width, result.height) == (width, height)
    image = assert_clean_jpeg(result, allowed=frozenset({0xEE}) if result.kept_original else frozenset())
    assert image.mode == ("L" if row["mode"] == "L" else "RGB")


@pytest.mark.parametrize("name", ["d_exif3_rocket.jpg", "d_exif6_12mp.jpg", "d_exif8_storm.jpg"])
def test_corpus_orientation_matches_exif_transpose(name: str) -> None:
    source = Image.open(CORPUS / name)
    assert source.getexif()[0x0112] in (3, 6, 8)
    reference = ImageOps.exif_transpose(source).convert("RGB")

    output = decode(compress_image(corpus(name)).data).convert("RGB")

    assert output.size == reference.size
    assert mad(output, reference) < 5
    assert mad(output, reference.transpose(Image.Transpose.ROTATE_180)) > 20  # the comparison can tell


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode_jpeg(quadrants(), quality=95, exif=exif)
    reference = ImageOps.exif_transpose(decode(data))

    result = compress_image(data)
    output = decode(result.data)

    assert output.size == reference.size == ((64, 96) if orientation >= 5 else (96, 64))
    assert mad(output, reference) < 4
    for x in range(16, output.width, 32):  # the centre of every block has its colour
        for y in range(16, output.height, 32):
            assert close(output.getpixel((x, y)), reference.getpixel((x, y)), 12)
    if orientation in (2, 3, 4):  # same size as the stored pixels, but not the same picture
        assert mad(output, decode(data)) > 40
    assert 0xE1 not in jpeg_markers(result.data)


def test_cmyk_jpeg_comes_out_in_the_colours_of_its_rgb_source() -> None:
    result = compress_image(corpus("d_cmyk_raindrops.jpg"))
    output = decode(result.data)
    # The RGB source (mate_RainDrops.jpg, 1.2 MB, not shipped) as its exact 8x8 box average; compared likewise.
    source = decode(corpus("ref_mate_RainDrops_240x150.png"))

    assert Image.open(CORPUS / "d_cmyk_raindrops.jpg").mode == "CMYK"
    assert output.mode == "RGB" and not result.kept_original
    assert mad(output.reduce(8), source) < 4
    assert mad(output.reduce(8), ImageChops.invert(source)) > 100  # Adobe's inverted CMYK was undone exactly once


def test_cmyk_jpeg_with_an_rgb_profile_ignores_the_mismatched_profile() -> None:
    adobe_rgb = Image.open(CORPUS / "sk_rocket.jpg").info["icc_profile"]
    cmyk = Image.new("CMYK", (32, 32), (0, 150, 200, 40))
    output = decode(compress_image(encode_jpeg(cmyk, quality=95, icc_profile=adobe_rgb)).data)
    assert close(output.getpixel((16, 16)), cmyk.convert("RGB").getpixel((16, 16)), 8)


def test_non_srgb_icc_profile_is_converted_with_littlecms() -> None:
    data = corpus("sk_rocket.jpg")
    source = decode(data)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    assert profile.profile.profile_description == "Adobe RGB (1998)"
    converted = ImageCms.profileToProfile(source, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert isinstance(converted, Image.Image)

    result = compress_image(data)

    assert result.data == reference_jpeg(converted)  # exactly the ImageCms conversion, encoded
    assert result.data != reference_jpeg(source)
    output = decode(result.data)
    assert mad(output, converted) < mad(output, source)
    assert not result.kept_original


@pytest.mark.parametrize("name", ["plasma_ColorfulCups.jpg", "sk_chelsea.png"])
def test_srgb_icc_profile_is_left_alone(name: str) -> None:
    data = corpus(name)
    source = decode(data)
    description = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"])).profile.profile_description
    assert description.startswith("sRGB")

    result = compress_image(data)

    # Byte-identical to encoding the decoded pixels: no sRGB->sRGB transform rounded anything.
    assert result.data == reference_jpeg(source)
    assert_clean_jpeg(result)


def test_rgb_png_with_a_non_srgb_profile_is_converted() -> None:
    adobe_rgb = Image.open(CORPUS / "sk_rocket.jpg").info["icc_profile"]
    picture = gradient()
    data = save(picture, "PNG", icc_profile=adobe_rgb)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(adobe_rgb))
    converted = ImageCms.profileToProfile(picture, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    assert isinstance(converted, Image.Image)
    assert mad(converted, picture) > 1

    result = compress_image(data)

    assert result.data == reference_jpeg(converted)
    assert_clean_jpeg(result)


def test_garbage_icc_profile_is_ignored() -> None:
    picture = gradient()
    result = compress_image(save(picture, "PNG", icc_profile=b"definitely not an ICC profile" * 4))
    assert result.data == reference_jpeg(picture)


# --- modes -------------------------------------------------------------------------------------------------


def test_fully_transparent_png_becomes_white() -> None:
    data = save(Image.new("RGBA", (64, 48), (0, 0, 0, 0)), "PNG")
    output = decode(compress_image(data).data)
    assert output.mode == "RGB"
    assert output.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_partial_alpha_is_blended_onto_white() -> None:
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    image.paste((0, 0, 255, 128), (32, 0, 64, 64))  # half-transparent blue on the right
    output = decode(compress_image(save(image, "PNG")).data)
    assert close(output.getpixel((8, 32)), (255, 0, 0), 12)
    assert close(output.getpixel((56, 32)), (127, 127, 255), 12)


def test_corpus_alpha_vignette_corners_are_white() -> None:
    source = Image.open(CORPUS / "d_alpha_yellowflower.png")
    assert source.getpixel((0, 0))[3] == 0
    output = decode(compress_image(corpus("d_alpha_yellowflower.png")).data)
    for corner in [(0, 0), (output.width - 1, 0), (0, output.height - 1), (output.width - 1, output.height - 1)]:
        assert close(output.getpixel(corner), WHITE, 6)
    centre = (output.width // 2, output.height // 2)
    assert close(output.getpixel(centre), source.getpixel(centre)[:3], 16)


def test_grey_with_alpha_stays_grey_on_white() -> None:
    image = Image.new("LA", (32, 32), (0, 255))
    image.paste((0, 0), (16, 0, 32, 32))
    output = decode(compress_image(save(image, "PNG")).data)
    assert output.mode == "L"
    assert output.getpixel((4, 16)) <= 8 and output.getpixel((28, 16)) >= 247


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(fmt: str) -> None:
    image = Image.new("P", (64, 32), 0)
    image.putpalette([0, 0, 0, 20, 160, 40] + [0, 0, 0] * 254)  # index 0 black (transparent), 1 green
    image.paste(1, (32, 0, 64, 32))
    output = decode(compress_image(save(image, fmt, transparency=0)).data)
    assert close(output.getpixel((8, 16)), WHITE, 6)  # not black
    assert close(output.getpixel((56, 16)), (20, 160, 40), 16)


def test_palette_without_transparency() -> None:
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0, 0, 0] * 254)
    output = decode(compress_image(save(image, "PNG")).data)
    assert close(output.getpixel((16, 16)), (200, 100, 50), 12)


def test_rgb_png_colour_key_transparency() -> None:
    image = Image.new("RGB", (32, 32), (10, 20, 30))
    image.paste((200, 30, 30), (16, 0, 32, 32))
    output = decode(compress_image(save(image, "PNG", transparency=(10, 20, 30))).data)
    assert close(output.getpixel((4, 16)), WHITE, 6)
    assert close(output.getpixel((28, 16)), (200, 30, 30), 16)


GREY_16 = [0, 25700, 32768, 65535]  # -> 0, 100, 128, 255 in 8 bits
GREY_8 = [0, 100, 128, 255]


def grey_blocks(mode: str, values: list[int] | list[float]) -> Image.Image:
    image = Image.new(mode, (16 * len(values), 16))
    for i, value in enumerate(values):
        # Image.new, not paste(value): Pillow 13 pastes the colour 32768 into an I;16 image as 0.
        image.paste(Image.new(mode, (16, 16), value), (16 * i, 0))
    return image


@pytest.mark.parametrize(
    ("fmt", "mode", "values"),
    [
        ("PNG", "I;16", GREY_16),
        ("TIFF", "I;16", GREY_16),
        ("TIFF", "I;16B", GREY_16),
        ("TIFF", "I", GREY_16),
        ("TIFF", "F", [v / 255 for v in GREY_8]),
        ("TIFF", "F", [float(v) for v in GREY_8]),
    ],
)
def test_high_bit_depth_grey_is_scaled_not_clipped(fmt: str, mode: str, values: list[int] | list[float]) -> None:
    data = save(grey_blocks(mode, values), fmt)
    assert Image.open(io.BytesIO(data)).mode == mode  # the decoder really hands us this mode

    result = compress_image(data)
    output = decode(result.data)

    assert output.mode == "L"
    for i, expected in enumerate(GREY_8):
        assert close(output.getpixel((16 * i + 8, 8)), expected, 2), (i, output.getpixel((16 * i + 8, 8)))


def test_sixteen_bit_grey_with_transparency() -> None:
    image = grey_blocks("I;16", [0, 32768])
    output = decode(compress_image(save(image, "PNG", transparency=0)).data)
    assert output.getpixel((8, 8)) >= 250  # transparent -> white, not black
    assert close(output.getpixel((24, 8)), 128, 3)


def test_sixteen_bit_rgb_png_keeps_its_colours() -> None:
    colours = [(65535, 32768, 0), (0, 25700, 65535), (51400, 51400, 51400)]  # -> (255,128,0) (0,100,255) 200s
    rows = b""
    for y in range(32 * len(colours)):
        rows += b"\x00" + struct.pack(">3H", *colours[y // 32]) * 32
    data = png_bytes(32, 32 * len(colours), 16, 2, rows)
    source = Image.open(io.BytesIO(data))
    assert source.mode == "RGB"

    output = decode(compress_image(data).data)

    for i, expected in enumerate([(255, 128, 0), (0, 100, 255), (200, 200, 200)]):
        assert close(output.getpixel((16, 32 * i + 16)), expected, 6), (i, output.getpixel((16, 32 * i + 16)))


def test_bilevel_image() -> None:
    image = Image.new("1", (32, 32), 0)
    image.paste(1, (16, 0, 32, 32))
    output = decode(compress_image(save(image, "PNG")).data)
    assert output.mode == "L"
    assert output.getpixel((4, 16)) <= 8 and output.getpixel((28, 16)) >= 247


def test_greyscale_jpeg_stays_greyscale() -> None:
    result = compress_image(encode_jpeg(gradient().convert("L"), quality=95))
    assert decode(result.data).mode == "L"


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}), ("WEBP", {"lossless": True}), ("GIF", {})],
)
def test_other_input_formats(fmt: str, options: dict[str, object]) -> None:
    image = Image.new("RGB", (32, 32), (200, 60, 20))
    result = compress_image(save(image, fmt, **options))
    assert result.input_format == fmt
    assert close(assert_clean_jpeg(result).getpixel((16, 16)), (200, 60, 20), 12)


# --- animation ---------------------------------------------------------------------------------------------


def test_corpus_animated_gif_gives_its_first_frame() -> None:
    data = corpus("sk_no_time_for_that_tiny.gif")
    animation = Image.open(io.BytesIO(data))
    assert animation.n_frames > 1
    first = animation.convert("RGB")
    animation.seek(1)
    second = animation.convert("RGB")

    result = compress_image(data)

    assert result.data == reference_jpeg(first)
    assert result.data != reference_jpeg(second)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "MPO"])
def test_multi_frame_images_give_the_first_frame(fmt: str) -> None:
    red, blue = Image.new("RGB", (32, 32), (220, 20, 20)), Image.new("RGB", (32, 32), (20, 20, 220))
    data = save(red, fmt, save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2

    result = compress_image(data)

    assert result.input_format == fmt
    assert not result.kept_original
    assert close(assert_clean_jpeg(result).getpixel((16, 16)), (220, 20, 20), 16)


# --- metadata ----------------------------------------------------------------------------------------------


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)})
    return exif


def test_gps_exif_xmp_icc_and_comment_are_stripped_on_reencode() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    data = encode_jpeg(gradient(), quality=95, exif=gps_exif(), icc_profile=srgb, xmp=xmp, comment=b"secret")
    source = Image.open(io.BytesIO(data))
    assert source.getexif().get_ifd(0x8825)[2] == (52.0, 22.0, 1.5)
    assert {0xE1, 0xE2, 0xFE} <= set(jpeg_markers(data))

    result = compress_image(data)

    assert not result.kept_original
    assert_clean_jpeg(result)
    for needle in (b"Exif", b"PhoneMaker", b"ICC_PROFILE", b"adobe:ns:meta", b"secret"):
        assert needle not in result.data


def test_gif_comment_is_not_copied_into_the_jpeg() -> None:
    data = save(Image.new("RGB", (32, 32), (20, 20, 220)), "GIF", comment=b"secret comment")
    assert Image.open(io.BytesIO(data)).info["comment"] == b"secret comment"
    result = compress_image(data)
    assert_clean_jpeg(result)
    assert b"secret" not in result.data


def small_q10_jpeg() -> Image.Image:
    """A real photo (576x864) saved at quality 10 with optimised tables: a q50 re-encode is larger."""
    return decode(corpus("d_05mp_friends.jpg"))


def test_keep_original_strips_metadata_losslessly_and_byte_exactly() -> None:
    plain = encode_jpeg(small_q10_jpeg(), quality=10, optimize=True)
    jfif_end = 2 + 2 + int.from_bytes(plain[4:6], "big")
    assert plain[6:11] == b"JFIF\x00"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    adobe = segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")  # transform 1: YCbCr, as the file is
    metadata = [
        segment(0xE1, gps_exif().tobytes()),
        segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"),
        segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + srgb),
        segment(0xE0, b"JFXX\x00\x10" + b"\xff\xd8 thumbnail \xff\xd9"),
        segment(0xED, b"Photoshop 3.0\x008BIM iptc byline"),
        segment(0xEF, b"vendor"),
        segment(0xFE, b"a comment"),
    ]
    trailer = b"\x00\x00\x00\x18ftypmp42 motion photo video"
    data = plain[:jfif_end] + metadata[0] + adobe + b"".join(metadata[1:]) + plain[jfif_end:] + trailer
    assert len(encode_jpeg(decode(data), quality=50, optimize=True)) > len(plain)  # the premise

    result = compress_image(data)

    assert result.kept_original
    assert result.data == plain[:jfif_end] + adobe + plain[jfif_end:]
    assert result.output_bytes < result.input_bytes == len(data)
    output = assert_clean_jpeg(result, allowed=frozenset({0xEE}))
    assert output.tobytes() == decode(data).tobytes()  # same pixels as the input
    assert (result.width, result.height) == (576, 864) and result.input_format == "JPEG"


def test_keep_original_drops_the_jfif_thumbnail() -> None:
    plain = encode_jpeg(small_q10_jpeg(), quality=10, optimize=True)
    jfif_end = 2 + 2 + int.from_bytes(plain[4:6], "big")
    jfif = bytearray(plain[6:jfif_end])
    jfif[12:14] = b"\x02\x01"  # a 2x1 RGB thumbnail follows
    data = plain[:2] + segment(0xE0, bytes(jfif) + b"\x10\x20\x30\x40\x50\x60") + plain[jfif_end:]

    result = compress_image(data)

    assert result.kept_original
    assert result.data == plain  # the JFIF segment is back to 16 bytes with a 0x0 thumbnail


def test_transformed_jpeg_is_never_kept_even_if_larger() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode_jpeg(small_q10_jpeg(), quality=10, optimize=True, exif=exif)

    result = compress_image(data)

    assert not result.kept_original
    assert result.output_bytes > len(data)  # larger, but the pixels had to be rotated
    assert (result.width, result.height) == (864, 576)
    assert_clean_jpeg(result)


def test_non_srgb_jpeg_is_never_kept() -> None:
    adobe_rgb = Image.open(CORPUS / "sk_rocket.jpg").info["icc_profile"]
    data = encode_jpeg(small_q10_jpeg(), quality=10, optimize=True, icc_profile=adobe_rgb)
    result = compress_image(data)
    assert not result.kept_original
    assert_clean_jpeg(result)


def test_srgb_jpeg_can_be_kept() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode_jpeg(small_q10_jpeg(), quality=10, optimize=True, icc_profile=srgb)
    result = compress_image(data)
    assert result.kept_original
    assert_clean_jpeg(result)


def test_output_is_an_optimised_jpeg_at_the_requested_quality() -> None:
    picture = gradient()
    data = save(picture, "PNG")
    assert compress_image(data).data == reference_jpeg(picture, 50)
    assert compress_image(data, quality=85).data == reference_jpeg(picture, 85)
    assert len(reference_jpeg(picture, 50)) < len(encode_jpeg(picture, quality=50))  # optimize=True matters


def test_deterministic() -> None:
    data = corpus("d_exif3_rocket.jpg")
    assert compress_image(data) == compress_image(data)


@pytest.mark.parametrize(
    "payload",
    [
        b"Exif\x00\x00" + bytes(range(256)) * 4,  # not TIFF at all
        b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + b"\xff\xff" + b"\x01" * 64,  # 65535 entries, 64 bytes
        b"Exif\x00\x00II*\x00" + struct.pack("<I", 0x7FFFFFF0),  # IFD offset far past the end
        b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) * 8,  # IFD pointing into itself
        exif_bytes([(0x0112, 3, 1, struct.pack("<H", 99))]),  # orientation out of range
        exif_bytes([(0x0112, 2, 4, b"six\x00")]),  # orientation as text
        exif_bytes([(0x0112, 3, 0x40000000, struct.pack("<I", 16))]),  # absurd count
        exif_bytes([(0x8825, 4, 1, struct.pack("<I", 0xFFFFFF00))]),  # GPS IFD nowhere
    ],
)
def test_garbage_exif_does_not_crash(payload: bytes) -> None:
    data = with_exif(encode_jpeg(quadrants(), quality=95), payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow says "Corrupt EXIF data" / "Skipping tag" with UserWarning
        result = compress_image(data)
    assert (result.width, result.height) == (96, 64)  # no rotation from nonsense
    assert_clean_jpeg(result)

    # With warnings turned into errors Pillow aborts its own EXIF parsing inside Image.open: the image is
    # then refused as corrupt or (when the warning comes later, from getexif) compressed unrotated.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            strict = compress_image(data)
        except ImageRejected as error:
            assert error.code == "CORRUPT_IMAGE"
        else:
            assert (strict.width, strict.height) == (96, 64)


def test_handmade_exif_orientation_is_read() -> None:  # the garbage cases above are built the same way
    data = with_exif(encode_jpeg(quadrants(), quality=95), exif_bytes([(0x0112, 3, 1, struct.pack("<H", 6))]))
    result = compress_image(data)
    assert (result.width, result.height) == (64, 96)


# --- refusals ----------------------------------------------------------------------------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A valid-looking, tiny PNG whose header declares width x height RGB pixels."""
    return png_bytes(width, height, 8, 2, b"\x00" * 64)


@pytest.mark.parametrize(
    "size",
    [
        (30_000, 30_000),  # Pillow's own guard (over 2x MAX_IMAGE_PIXELS) fires inside Image.open
        (10_000, 6_000),  # over our 50 MP limit, under Pillow's
        (65_535, 1),  # a long thin one is fine by size...
    ],
)
def test_decompression_bomb_is_refused_from_the_header(size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)  # the refusal must come before any pixel
    data = bomb_png(*size)
    assert len(data) < 200
    limits = ImageLimits(max_pixels=50_000 if size == (65_535, 1) else 50_000_000)  # ...unless limited
    assert rejected(data, limits=limits).code == "TOO_MANY_PIXELS"


def webp_vp8x_header(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (width - 1).to_bytes(3, "little")
    body += (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def test_webp_bomb_is_refused_before_pillow_allocates_its_canvas(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoder(data: bytes) -> None:
        raise AssertionError("the WebP decoder (which allocates width*height*4 bytes twice) was created")

    monkeypatch.setattr(WebPImagePlugin._webp, "WebPAnimDecoder", no_decoder)
    data = webp_vp8x_header(8000, 8000)  # 64 MP: under Pillow's own limits, over ours
    assert rejected(data).code == "TOO_MANY_PIXELS"


@pytest.mark.parametrize("name", ["d_webp_sunset_1.7mp.webp"])
def test_webp_header_sizes_are_read_like_pillow_does(name: str) -> None:
    data = corpus(name)
    image = Image.open(io.BytesIO(data))
    assert rejected(data, limits=ImageLimits(max_pixels=image.width * image.height - 1)).code == "TOO_MANY_PIXELS"
    for kind, options in [("lossless", {"lossless": True}), ("alpha", {})]:
        small = save(Image.new("RGBA" if kind == "alpha" else "RGB", (300, 200), (9, 9, 9, 9)), "WEBP", **options)
        assert rejected(small, limits=ImageLimits(max_pixels=59_999)).code == "TOO_MANY_PIXELS", kind
        assert compress_image(small, limits=ImageLimits(max_pixels=60_000)).width == 300, kind


def test_pillow_bomb_warning_as_error_is_a_rejection_not_a_crash() -> None:
    data = bomb_png(10_000, 10_000)  # 100 MP: above Image.MAX_IMAGE_PIXELS, below twice it: a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rejected(data, limits=ImageLimits(max_pixels=10**9)).code == "TOO_MANY_PIXELS"


def test_pixel_limit_is_inclusive() -> None:
    data = save(Image.new("RGB", (100, 50), (1, 2, 3)), "PNG")
    assert compress_image(data, limits=ImageLimits(max_pixels=5000)).width == 100
    assert rejected(data, limits=ImageLimits(max_pixels=4999)).code == "TOO_MANY_PIXELS"


def test_too_many_bytes_is_refused_before_looking_at_the_content() -> None:
    assert rejected(b"<html>" + b"x" * 2000, limits=ImageLimits(max_bytes=1000)).code == "TOO_LARGE"
    data = corpus("d_exif3_rocket.jpg")
    assert rejected(data, limits=ImageLimits(max_bytes=len(data) - 1)).code == "TOO_LARGE"
    assert compress_image(data, limits=ImageLimits(max_bytes=len(data))).input_bytes == len(data)


@pytest.mark.parametrize(
    ("name", "keep"),
    [
        ("d_05mp_friends.jpg", 0.5),
        ("plasma_ColorfulCups.jpg", 0.5),  # progressive
        ("d_05mp_friends.jpg", -2),  # only the EOI marker missing
        ("sk_chelsea.png", 0.5),
        ("sk_chelsea.png", -12),  # only IEND missing
        ("d_webp_sunset_1.7mp.webp", 0.5),
    ],
)
@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_image_is_corrupt(
    name: str, keep: float, load_truncated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even with Pillow's global switch that accepts partial images turned on (by someone else), we refuse.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    data = corpus(name)
    cut = data[: int(len(data) * keep)] if keep > 0 else data[: int(keep)]
    error = rejected(cut)
    assert error.code == "CORRUPT_IMAGE"
    assert str(error)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>nope</body></html>",
        b"Not Found",
        b'{"error": "forbidden"}',
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        bytes(range(256)) * 8,
    ],
)
def test_non_image_bytes(data: bytes) -> None:
    error = rejected(data)
    assert error.code == "NOT_AN_IMAGE"
    assert str(error) == error.message


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b'<svg xmlns="http://www.w3.org/2000/svg"></svg>',
        b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + b"\x00" * 64,
        b"8BPS\x00\x01" + b"\x00" * 64,
        save(Image.new("RGB", (16, 16), "red"), "ICO"),  # Pillow reads ICO, but it is not on our list
    ],
)
def test_unsupported_image_formats(data: bytes) -> None:
    assert rejected(data).code == "UNSUPPORTED_FORMAT"


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"\xff\xd8\xff\xe0" + b"\x00" * 40,
        b"GIF89a" + b"\x00" * 3,
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8,
        bomb_png(64, 64),  # header fine, pixel data garbage
    ],
)
def test_damaged_images_are_corrupt(data: bytes) -> None:
    error = rejected(data)
    assert error.code == "CORRUPT_IMAGE", error


def test_rejection_carries_code_and_message() -> None:
    error = ImageRejected("TOO_LARGE", "image is 30 MB; the limit is 25 MB")
    assert (error.code, str(error)) == ("TOO_LARGE", "image is 30 MB; the limit is 25 MB")
    with pytest.raises(ValueError, match="unknown rejection code"):
        ImageRejected("SOMETHING_ELSE", "x")


def test_rejection_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ImageRejected("CORRUPT_IMAGE", "broken")))
    assert (error.code, error.message, str(error)) == ("CORRUPT_IMAGE", "broken", "broken")


def test_quality_out_of_range_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="quality"):
        compress_image(corpus("d_exif3_rocket.jpg"), quality=0)
