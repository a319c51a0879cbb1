"""The dependencies layer build (infra/layers.py), offline: a tiny local wheel stands in for PyPI."""

from __future__ import annotations

import zipfile

import pytest

from infra.layers import (
    PLATFORMS,
    LayerBuildError,
    build_dependencies_layer,
    cache_key,
    check_wheel_tags,
    pip_arguments,
)


def make_wheel(directory, name="tinypkg", version="1.0", tag="py3-none-any"):
    wheel = directory / f"{name}-{version}-{tag}.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "VALUE = 42\n")
        archive.writestr(f"{name}/__pycache__/stale.cpython-312.pyc", b"")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n")
        archive.writestr(f"{info}/entry_points.txt", f"[console_scripts]\n{name} = {name}:main\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def local_index(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinypkg==1.0\n")
    return requirements, ("--no-index", "--find-links", str(wheels))


def test_builds_a_stripped_layer_once_and_reuses_it(local_index, tmp_path):
    requirements, offline = local_index
    cache = tmp_path / "cache"
    built = build_dependencies_layer(requirements, cache, extra_pip_arguments=offline, smoke_imports=("tinypkg",))
    site = built.path / "python"
    assert (site / "tinypkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert not list(site.rglob("__pycache__")) and not (site / "bin").exists()
    # no trace of the console script, whose shebang would make the layer differ from machine to machine
    assert "../" not in (site / "tinypkg-1.0.dist-info" / "RECORD").read_text()
    assert built.distributions == ("tinypkg-1.0",)
    assert built.size_bytes > 0 and len(built.content_hash) == 64
    assert built.path.name == cache_key(requirements, offline)

    (tmp_path / "wheels" / "tinypkg-1.0-py3-none-any.whl").unlink()  # pip could not install it again
    assert build_dependencies_layer(requirements, cache, extra_pip_arguments=offline) == built


def test_other_requirements_are_another_layer_which_replaces_the_old_one(local_index, tmp_path):
    requirements, offline = local_index
    cache = tmp_path / "cache"
    first = build_dependencies_layer(requirements, cache, extra_pip_arguments=offline, smoke_imports=("tinypkg",))
    requirements.write_text("tinypkg\n")
    second = build_dependencies_layer(requirements, cache, extra_pip_arguments=offline, smoke_imports=("tinypkg",))
    assert second.path != first.path
    assert list(cache.iterdir()) == [second.path]


def test_a_layer_that_does_not_import_is_refused(local_index, tmp_path):
    requirements, offline = local_index
    with pytest.raises(LayerBuildError, match="does not import"):
        build_dependencies_layer(
            requirements, tmp_path / "cache", extra_pip_arguments=offline, smoke_imports=("tinypkg.missing",)
        )
    assert not list((tmp_path / "cache").glob("*/layer.json"))  # nothing half-built is cached


def test_pip_failures_are_reported(local_index, tmp_path):
    requirements, offline = local_index
    requirements.write_text("tinypkg==2.0\n")
    with pytest.raises(LayerBuildError, match="tinypkg"):
        build_dependencies_layer(requirements, tmp_path / "cache", extra_pip_arguments=offline)


@pytest.mark.parametrize(
    ("tag", "accepted"),
    [
        ("py3-none-any", True),
        ("cp312-cp312-manylinux_2_28_x86_64", True),
        ("cp38-abi3-manylinux_2_17_x86_64", True),
        ("cp312-cp312-manylinux_2_28_aarch64", False),
        ("cp313-cp313-manylinux_2_28_x86_64", False),
        ("cp312-cp312-macosx_11_0_arm64", False),
    ],
)
def test_only_wheels_for_python312_on_x86_64_linux_pass(tmp_path, tag, accepted):
    info = tmp_path / "pkg-1.0.dist-info"
    info.mkdir()
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {tag}\n")
    if accepted:
        assert check_wheel_tags(tmp_path) == ("pkg-1.0",)
    else:
        with pytest.raises(LayerBuildError, match=r"not python3\.12 on x86_64"):
            check_wheel_tags(tmp_path)


def test_pip_is_asked_for_lambdas_platform_binaries_only(tmp_path):
    arguments = pip_arguments(tmp_path / "requirements.txt", tmp_path / "python")
    assert "--only-binary=:all:" in arguments
    assert arguments[arguments.index("--python-version") + 1] == "3.12"
    assert arguments[arguments.index("--implementation") + 1] == "cp"
    platforms = [arguments[i + 1] for i, argument in enumerate(arguments) if argument == "--platform"]
    assert platforms == list(PLATFORMS)
    # manylinux2014 (glibc 2.17) up to Amazon Linux 2023's glibc 2.34: pillow 13 ships manylinux_2_28 only
    assert {"manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"} <= set(platforms)
    assert "manylinux_2_35_x86_64" not in platforms
