#!/bin/sh
# Fail the GPU image's build when ONNX Runtime's CUDA provider could not load: `ldd` on
# libonnxruntime_providers_cuda.so must resolve every library (CUDA, cuBLAS, cuFFT, cuRAND, cuDNN) from the
# image. onnxruntime.get_available_providers() lists CUDA even when these libraries are missing, so it proves
# nothing: a wheel built for another CUDA major version (onnxruntime-gpu 1.31.1 wants CUDA 13) installs
# cleanly and then runs every session on the CPU.
#
# Only the driver library (libcuda.so.1) may be missing: the NVIDIA container toolkit mounts it at run time.
# Usage: check_ort_cuda.sh [PATH/TO/libonnxruntime_providers_cuda.so]   (default: the installed onnxruntime's)
set -eu
python=${PYTHON:-python}
lib=${1:-$("$python" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime_providers_cuda.so"))')}
if [ ! -f "$lib" ]; then
    echo "check_ort_cuda: FAILED: $lib does not exist (is onnxruntime-gpu installed, not onnxruntime?)" >&2
    exit 1
fi
missing=$(ldd "$lib" | awk '/not found/ && $1 != "libcuda.so.1" {print $1}' | sort -u | tr '\n' ' ')
if [ -n "$missing" ]; then
    echo "check_ort_cuda: FAILED: $lib needs libraries this image does not have: $missing" >&2
    echo "check_ort_cuda: pin an onnxruntime-gpu built for this image's CUDA and cuDNN (ORT_GPU_SPEC)." >&2
    exit 1
fi
echo "check_ort_cuda: ok, every library of $(basename "$lib") resolves"
