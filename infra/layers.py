"""Build the dependencies layer without Docker: pip downloads manylinux wheels for Lambda's platform.

Lambda runs python3.12 on x86_64 (Amazon Linux 2023, glibc 2.34), so only wheels for CPython 3.12 and a manylinux
tag up to glibc 2.34 are accepted (`--only-binary=:all:`: nothing is compiled here). boto3 stays in the layer: the
requirements pin it, and the functions then run the SDK the tests ran, not the runtime's.

The result is cached under `.build/layers/dependencies/<key>/python`, the key a hash of the requirements, of the
platform arguments and of this file, so a second synth reuses it. `python -m infra.layers` builds it alone."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "layers" / "requirements.txt"
CACHE = ROOT / ".build" / "layers" / "dependencies"

PYTHON_VERSION = "3.12"
ARCHITECTURE = "x86_64"
GLIBC_MINOR = 34  # Amazon Linux 2023
# pip does not expand manylinux_2_X to older glibc versions itself: list them (pillow ships only manylinux_2_28).
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 16, -1)))
# Lambda allows 250 MiB unzipped for a function's code and all its layers: leave 50 MiB to the domain layer
# and the handlers (a few hundred KiB today).
LAYER_BUDGET_BYTES = 200 * 1024 * 1024
# Imported from the built layer alone (no site-packages) when this machine can run Lambda's binaries.
SMOKE_IMPORTS = (
    "PIL.Image",
    "pymongo",
    "pymongo_auth_aws",  # MONGODB-AWS: the functions authenticate to Atlas with their IAM roles
    "pydantic_core",
    "pydantic_settings",
    "python_multipart",
    "tenacity",
    "aws_lambda_powertools.utilities.parameters",
)
MANIFEST = "layer.json"


@dataclass(frozen=True)
class BuiltLayer:
    path: Path  # the layer's root: holds python/
    content_hash: str  # of every file's path and bytes, computed once at build time (the CDK asset hash)
    size_bytes: int
    distributions: tuple[str, ...]


class LayerBuildError(RuntimeError):
    pass


def pip_arguments(requirements: Path, target: Path) -> list[str]:
    platforms = [argument for tag in PLATFORMS for argument in ("--platform", tag)]
    return [
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *platforms,
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--target",
        str(target),
        "-r",
        str(requirements),
    ]


def cache_key(requirements: Path, extra_pip_arguments: Sequence[str] = ()) -> str:
    """The requirements, pip's arguments and this build recipe: a change to any of them builds a new layer."""
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(json.dumps([*pip_arguments(Path("r"), Path("t")), *extra_pip_arguments]).encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def build_dependencies_layer(
    requirements: Path = REQUIREMENTS,
    cache: Path = CACHE,
    *,
    extra_pip_arguments: Sequence[str] = (),
    smoke_imports: Sequence[str] = SMOKE_IMPORTS,
) -> BuiltLayer:
    """The cached layer for these requirements, built first if needed."""
    key = cache_key(requirements, extra_pip_arguments)
    layer = cache / key
    manifest = layer / MANIFEST
    if manifest.exists():
        return _read_manifest(layer)
    staging = cache / f"{key}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "python"
    command = [sys.executable, "-m", "pip", *pip_arguments(requirements, site), *extra_pip_arguments]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if completed.returncode != 0:
        raise LayerBuildError(f"pip could not build the layer:\n{completed.stderr.strip()}")
    _strip(site)
    distributions = check_wheel_tags(site)
    size = sum(path.stat().st_size for path in site.rglob("*") if path.is_file())
    if size > LAYER_BUDGET_BYTES:
        raise LayerBuildError(
            f"the layer is {size / 2**20:.0f} MiB unzipped, over the {LAYER_BUDGET_BYTES >> 20} MiB budget"
        )
    if _can_run_lambda_binaries():
        _smoke_import(site, smoke_imports)
    built = BuiltLayer(layer, _content_hash(site), size, distributions)
    (staging / MANIFEST).write_text(
        json.dumps({"content_hash": built.content_hash, "size_bytes": size, "distributions": distributions}, indent=1)
    )
    shutil.rmtree(layer, ignore_errors=True)
    staging.rename(layer)
    for stale in (other for other in cache.iterdir() if other != layer):  # earlier requirements' layers
        shutil.rmtree(stale)
    return built


def check_wheel_tags(site: Path) -> tuple[str, ...]:
    """Every installed distribution must be pure Python or built for CPython 3.12 on manylinux x86_64."""
    distributions = []
    for wheel in sorted(site.glob("*.dist-info/WHEEL")):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
        if not any(_runs_on_lambda(tag) for tag in tags):
            raise LayerBuildError(f"{wheel.parent.name} is built for {', '.join(tags)}, not python3.12 on x86_64")
        distributions.append(wheel.parent.name.removesuffix(".dist-info"))
    if not distributions:
        raise LayerBuildError(f"nothing was installed into {site}")
    return tuple(distributions)


def _runs_on_lambda(tag: str) -> bool:
    interpreter, abi, platform_tag = tag.split("-")
    if platform_tag == "any":
        return True
    python_ok = interpreter in ("cp312", "py3") or (abi == "abi3" and interpreter.startswith("cp3"))
    # pip accepts manylinux2010 and manylinux1 wheels where manylinux2014 is asked for (PEP 599)
    return python_ok and platform_tag in (*PLATFORMS, "manylinux2010_x86_64", "manylinux1_x86_64")


def _strip(site: Path) -> None:
    """pip's console scripts (bin/) and any bytecode caches are dead weight in a layer. The scripts' RECORD entries
    go too: their hashes cover a shebang naming this machine's interpreter, and the layer must be the same bytes
    (the same asset hash) wherever it is built."""
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    shutil.rmtree(site / "bin", ignore_errors=True)
    for record in site.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(line for line in lines if not line.startswith("../")))


def _content_hash(site: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        digest.update(path.relative_to(site).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _can_run_lambda_binaries() -> bool:
    return (
        sys.platform == "linux"
        and platform.machine() == ARCHITECTURE
        and f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION
    )


def _smoke_import(site: Path, modules: Sequence[str]) -> None:
    if not modules:
        return
    # -S: no site-packages, so only the standard library and the layer can answer the imports.
    command = [sys.executable, "-S", "-c", "; ".join(f"import {module}" for module in modules)]
    environment = {**os.environ, "PYTHONPATH": str(site)}
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)  # noqa: S603
    if completed.returncode != 0:
        raise LayerBuildError(f"the built layer does not import: {completed.stderr.strip()}")


def _read_manifest(layer: Path) -> BuiltLayer:
    manifest = json.loads((layer / MANIFEST).read_text())
    return BuiltLayer(layer, manifest["content_hash"], manifest["size_bytes"], tuple(manifest["distributions"]))


def main() -> None:
    built = build_dependencies_layer()
    print(f"{built.path} ({built.size_bytes / 2**20:.1f} MiB unzipped, {len(built.distributions)} distributions)")


if __name__ == "__main__":
    main()
