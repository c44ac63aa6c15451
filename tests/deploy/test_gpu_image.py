"""The GPU image's build-time check (docker/check_ort_cuda.sh): the build fails when `ldd` cannot resolve a
library of ONNX Runtime's CUDA provider, i.e. when onnxruntime-gpu was built for another CUDA than the image's.

The check runs here on real ELF files made with the C compiler: a stand-in provider library that needs a CUDA 13
library (what onnxruntime-gpu 1.31 needs) against a folder holding only CUDA 12 ones fails; with the library
it needs present it passes; the driver (libcuda.so.1, mounted by the NVIDIA toolkit at run time) may be missing.
The real image is built by scripts/container_smoke.sh (and a wrong pin fails there: docs/deploy.md)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "docker" / "check_ort_cuda.sh"

pytestmark = pytest.mark.skipif(not shutil.which("cc") or not shutil.which("ldd"), reason="needs cc and ldd")


def _shared_library(path: Path, needs: list[str], tmp: Path) -> Path:
    """An ELF shared library whose NEEDED entries are ``needs`` (linked against empty stubs of those names)."""
    stubs = tmp / "link-stubs"
    stubs.mkdir(exist_ok=True)
    (tmp / "empty.c").write_text("void teleder_stub(void) {}\n")
    (tmp / "provider.c").write_text("int teleder_provider(void) { return 1; }\n")
    for soname in needs:
        subprocess.run(
            [
                "cc",
                "-shared",
                "-fPIC",
                f"-Wl,-soname,{soname}",
                "-o",
                str(stubs / soname),
                str(tmp / "empty.c"),
            ],
            check=True,
        )
    links = [f"-l:{soname}" for soname in needs]
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", str(path), str(tmp / "provider.c"),
         f"-L{stubs}", *links],
        check=True,
    )  # fmt: skip
    return stubs


def _check(library: Path, library_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"]}
    if library_path is not None:
        env["LD_LIBRARY_PATH"] = str(library_path)
    return subprocess.run(["sh", str(CHECK), str(library)], capture_output=True, text=True, env=env)


def test_a_provider_built_for_another_cuda_fails_the_build(tmp_path):
    provider = tmp_path / "libonnxruntime_providers_cuda.so"
    _shared_library(provider, ["libcublasLt.so.13", "libcublas.so.13", "libcuda.so.1"], tmp_path)
    cuda12 = tmp_path / "cuda12"  # the image's libraries: CUDA 12 only
    cuda12.mkdir()
    _shared_library(cuda12 / "unused.so", ["libcublasLt.so.12", "libcublas.so.12"], tmp_path / "cuda12")
    for stub in (tmp_path / "cuda12" / "link-stubs").iterdir():
        shutil.copy(stub, cuda12 / stub.name)

    result = _check(provider, cuda12)

    assert result.returncode == 1
    assert "libcublasLt.so.13" in result.stderr and "libcublas.so.13" in result.stderr
    assert "libcuda.so.1" not in result.stderr  # the driver comes at run time


def test_a_provider_whose_libraries_resolve_passes(tmp_path):
    provider = tmp_path / "libonnxruntime_providers_cuda.so"
    stubs = _shared_library(provider, ["libcublasLt.so.12", "libcudnn.so.9", "libcuda.so.1"], tmp_path)
    (stubs / "libcuda.so.1").unlink()  # no driver at build time

    result = _check(provider, stubs)

    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_a_missing_provider_library_fails(tmp_path):
    result = _check(tmp_path / "libonnxruntime_providers_cuda.so")
    assert result.returncode == 1 and "does not exist" in result.stderr
