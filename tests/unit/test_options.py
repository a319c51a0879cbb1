"""Per-request output options: validation (400 OPTION_INVALID naming the field) and what the engine makes of them."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from ips.shared.errors import InvalidInput
from ips.shared.imaging import compress_image
from ips.shared.messages import parse_task
from ips.shared.model import ImageTask
from ips.shared.options import DEFAULT_OPTIONS, ImageOptions, OutputFormat, parse_options


def png(mode: str, size: tuple[int, int], colour: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(size: tuple[int, int], quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize(size).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_no_options_are_the_service_defaults() -> None:
    options = parse_options({})
    assert options == DEFAULT_OPTIONS
    assert options.to_document() == {
        "format": "jpeg",
        "quality": 50,
        "maxWidth": None,
        "maxHeight": None,
        "background": "#ffffff",
    }


def test_form_values_are_read_as_text_and_empty_ones_ignored() -> None:
    options = parse_options({"format": " WebP", "quality": "80", "maxWidth": "640", "maxHeight": "", "file": b"x"})
    assert (options.format, options.quality, options.maxWidth, options.maxHeight) == (OutputFormat.WEBP, 80, 640, None)


def test_an_unset_quality_is_the_configured_one() -> None:
    assert parse_options({}, default_quality=70).quality == 70
    assert parse_options({"quality": 20}, default_quality=70).quality == 20


@pytest.mark.parametrize(
    ("raw", "field", "code"),
    [
        ({"format": "gif"}, "format", "UNKNOWN_VALUE"),
        ({"quality": "0"}, "quality", "OUT_OF_RANGE"),
        ({"quality": 96}, "quality", "OUT_OF_RANGE"),
        ({"quality": "high"}, "quality", "NOT_AN_INTEGER"),
        ({"maxWidth": "12.5"}, "maxWidth", "NOT_AN_INTEGER"),
        ({"maxHeight": "0"}, "maxHeight", "OUT_OF_RANGE"),
        ({"background": "white"}, "background", "NOT_A_COLOUR"),
        ({"background": "#fff"}, "background", "NOT_A_COLOUR"),
    ],
)
def test_a_bad_option_names_its_field(raw: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options(raw)
    assert caught.value.code == "OPTION_INVALID"
    [problem] = caught.value.problems
    assert (problem.row, problem.column, problem.code) == (None, field, code)
    assert field in problem.message


def test_every_bad_option_is_listed() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options({"format": "bmp", "quality": "200", "background": "red"})
    assert sorted(problem.column for problem in caught.value.problems) == ["background", "format", "quality"]


def test_tasks_carry_their_options_and_name_their_output_by_format() -> None:
    options = ImageOptions(format=OutputFormat.AVIF, quality=40, maxWidth=100)
    task = ImageTask("req", 2, 0, "http://127.0.0.1/a.png", "salt", "tenant-a", options)
    assert re.fullmatch(r"req/2/0-[\w-]{22}\.avif", task.output_key)  # the tag, then the format's extension
    assert parse_task(task.to_message()) == task
    assert ImageTask("req", 2, 0, "u", "salt").output_key == task.output_key.removesuffix(".avif") + ".jpg"


def test_the_default_options_give_exactly_the_old_output() -> None:
    data = png("RGBA", (40, 30), (10, 200, 30, 128))
    assert compress_image(data, options=DEFAULT_OPTIONS) == compress_image(data)
    photo = jpeg((64, 48))
    assert compress_image(photo, options=DEFAULT_OPTIONS) == compress_image(photo, quality=50)


@pytest.mark.parametrize("fmt", [OutputFormat.WEBP, OutputFormat.AVIF])
def test_webp_and_avif_keep_alpha(fmt: OutputFormat) -> None:
    data = png("RGBA", (40, 30), (10, 200, 30, 0))
    image = compress_image(data, options=ImageOptions(format=fmt))
    assert image.output_format == fmt.pillow_name
    decoded = Image.open(io.BytesIO(image.data))
    assert decoded.format == fmt.pillow_name
    assert decoded.mode == "RGBA" and decoded.getpixel((5, 5))[3] == 0


def test_jpeg_flattens_alpha_onto_the_background() -> None:
    data = png("RGBA", (40, 30), (0, 0, 0, 0))
    image = compress_image(data, options=ImageOptions(background="#ff0000"))
    red, green, blue = Image.open(io.BytesIO(image.data)).getpixel((5, 5))
    assert red > 240 and green < 15 and blue < 15
    grey = compress_image(png("LA", (40, 30), (0, 0)), options=ImageOptions(background="#0000ff"))
    assert Image.open(io.BytesIO(grey.data)).getpixel((5, 5))[2] > 240  # grey input, coloured matte: colour


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ({"maxWidth": 100}, (100, 50)),
        ({"maxHeight": 25}, (50, 25)),
        ({"maxWidth": 100, "maxHeight": 10}, (20, 10)),
        ({"maxWidth": 1000, "maxHeight": 1000}, (400, 200)),  # never enlarged
    ],
)
def test_fit_inside_keeps_the_aspect_ratio_and_never_enlarges(
    bounds: dict[str, int], expected: tuple[int, int]
) -> None:
    image = compress_image(jpeg((400, 200)), options=ImageOptions(**bounds))
    assert (image.width, image.height) == expected
    assert Image.open(io.BytesIO(image.data)).size == expected


def test_the_never_larger_rule_is_for_same_format_same_size_output_only() -> None:
    buffer = io.BytesIO()
    Image.merge("RGB", [Image.effect_noise((64, 48), 60)] * 3).save(buffer, "JPEG", quality=30)
    small = buffer.getvalue()  # noise at quality 30 in, 95 out: the re-encode is larger
    assert compress_image(small, options=ImageOptions(quality=95)).kept_original
    assert not compress_image(small, options=ImageOptions(quality=95, maxWidth=32)).kept_original
    assert compress_image(small, options=ImageOptions(quality=95, format=OutputFormat.WEBP)).output_format == "WEBP"


def test_fingerprint_ignores_the_background_where_alpha_is_kept() -> None:
    assert ImageOptions(format="webp").fingerprint() == ImageOptions(format="webp", background="#000000").fingerprint()
    assert ImageOptions().fingerprint() != ImageOptions(background="#000000").fingerprint()
    assert ImageOptions().fingerprint() != ImageOptions(quality=51).fingerprint()
