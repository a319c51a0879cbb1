"""The benchmark's statistics helpers (bench/stats.py, bench/quality.py's SSIM): pure functions, no timing."""

from __future__ import annotations

import pytest

from bench.stats import cycle, median, megapixels_per_second, percentile, ratio, rotated, spread, summed_medians


def test_median_of_odd_and_even_counts() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([7]) == 7
    with pytest.raises(ValueError):
        median([])


def test_percentile_interpolates_like_numpy() -> None:
    values = [10, 20, 30, 40, 50]
    assert percentile(values, 0) == 10
    assert percentile(values, 50) == 30
    assert percentile(values, 100) == 50
    assert percentile(values, 95) == pytest.approx(48)
    assert percentile([5], 95) == 5
    with pytest.raises(ValueError):
        percentile(values, 101)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ratio_is_none_without_a_positive_baseline() -> None:
    assert ratio(3, 2) == 1.5
    assert ratio(None, 2) is None
    assert ratio(3, None) is None
    assert ratio(3, 0) is None


def test_spread_reports_min_median_max_and_count() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}


def test_rotated_varies_who_goes_first() -> None:
    items = ("engine", "sharp", "decode", "encode")
    assert rotated(items, 0) == list(items)
    assert rotated(items, 1) == ["sharp", "decode", "encode", "engine"]
    assert rotated(items, 5) == rotated(items, 1)
    assert [rotated(items, shift)[0] for shift in range(4)] == list(items)
    assert rotated((), 3) == []


def test_megapixels_per_second() -> None:
    assert megapixels_per_second(12_000_000, 0.5) == 24
    with pytest.raises(ValueError):
        megapixels_per_second(1, 0)


def test_summed_medians_ignores_one_slow_round() -> None:
    samples = {"a.jpg": [0.1, 0.1, 5.0], "b.jpg": [0.2, 0.3, 0.2]}
    assert summed_medians(samples) == pytest.approx(0.3)


def test_cycle_repeats_the_mix_in_order() -> None:
    assert cycle(["a", "b", "c"], 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert cycle(["a"], 0) == []
    assert cycle([], 0) == []
    with pytest.raises(ValueError):
        cycle([], 1)
    with pytest.raises(ValueError):
        cycle(["a"], -1)


def test_ssim_is_one_for_identical_images_and_drops_with_noise() -> None:
    np = pytest.importorskip("numpy")
    from bench.quality import ssim

    rng = np.random.default_rng(7)
    gradient = np.add.outer(np.arange(64.0), np.arange(80.0)) * 1.5
    image = np.clip(gradient + rng.normal(0, 8, gradient.shape), 0, 255)
    assert ssim(image, image) == pytest.approx(1.0)
    slightly = np.clip(image + rng.normal(0, 2, image.shape), 0, 255)
    heavily = np.clip(image + rng.normal(0, 30, image.shape), 0, 255)
    assert 1.0 > ssim(image, slightly) > ssim(image, heavily) > 0
    with pytest.raises(ValueError):
        ssim(image, image[:-1])


def test_ssim_matches_a_direct_gaussian_window_computation() -> None:
    np = pytest.importorskip("numpy")
    from bench.quality import _KERNEL, ssim

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (40, 37))
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
    window = np.outer(_KERNEL, _KERNEL).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for top in range(x.shape[0] - 10):
        for left in range(x.shape[1] - 10):
            a, b = x[top : top + 11, left : left + 11], y[top : top + 11, left : left + 11]
            ma, mb = (window * a).sum(), (window * b).sum()
            va, vb = (window * a * a).sum() - ma**2, (window * b * b).sum() - mb**2
            cov = (window * a * b).sum() - ma * mb
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert ssim(x, y) == pytest.approx(float(np.mean(values)), abs=1e-4)


def test_ssim_of_an_image_smaller_than_the_window() -> None:
    np = pytest.importorskip("numpy")
    from bench.quality import ssim

    tiny = np.arange(25.0 * 9).reshape(25, 9) % 255
    assert tiny.shape[1] < 11
    assert ssim(tiny, tiny) == pytest.approx(1.0)
