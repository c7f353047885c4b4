#!/usr/bin/env bash
# Makes a CUDA 13 build toolchain for `cargo build --features cuda` out of NVIDIA's PyPI wheels,
# on a machine with no CUDA toolkit and no GPU (Debian 12's own toolkit is 11.8, in non-free).
#
#   build-support/cuda-from-pypi.sh /opt/cuda-pypi      # downloads about 570 MB of wheels
#   source /opt/cuda-pypi/env.sh                        # CUDACXX, PATH, CMAKE_*, RUSTFLAGS
#   CARGO_TARGET_DIR=target-cuda cargo build --release --features cuda
#
# The wheels unpack into one toolkit tree, nvidia/cu13/{bin,include,lib,nvvm}. Three things a
# full toolkit has and the wheels lack are made here:
#   - unversioned library names (libcublas.so -> libcublas.so.13, ...) for the linker;
#   - lib/stubs/libcuda.so: the driver library to link against (the real libcuda.so.1 comes with
#     the NVIDIA driver at run time), generated with the driver-API functions ggml-cuda calls,
#     their names taken from cuda.h so its versioned aliases resolve as they do in real code;
#   - lib/stubs/libculibos.a, empty: whisper-rs-sys asks for it, but only static cuBLAS needs it.
# CMAKE_CUDA_ARCHITECTURES defaults to 90 (H100/H200); set it before sourcing env.sh for others.
# Running the binary needs the NVIDIA driver and libcudart.so.13 / libcublas*.so.13 on the
# loader's path (this tree's lib/, or the same wheels installed there).
set -euo pipefail
dest="${1:?usage: $0 DEST_DIR}"
mkdir -p "$dest/wheels"
dest="$(cd "$dest" && pwd)"

python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest/wheels" \
  nvidia-cuda-nvcc==13.5.37 nvidia-nvvm==13.5.37 nvidia-cuda-crt==13.5.37 \
  nvidia-cuda-runtime==13.5.37 nvidia-cublas==13.10.0.20 nvidia-cuda-cccl==13.3.5.0.6
for w in "$dest"/wheels/*.whl; do
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$w" "$dest"
done

root="$dest/nvidia/cu13"
chmod +x "$root"/bin/* "$root"/nvvm/bin/*
cd "$root/lib"
for lib in libcublas libcublasLt libcudart; do ln -sf "$lib.so.13" "$lib.so"; done
mkdir -p stubs
ar rcs stubs/libculibos.a

names="cuInit cuDriverGetVersion cuDeviceGet cuDeviceGetAttribute cuCtxGetCurrent cuGetErrorName
  cuGetErrorString cuMemAddressFree cuMemAddressReserve cuMemCreate cuMemGetAllocationGranularity
  cuMemMap cuMemRelease cuMemSetAccess cuMemUnmap"
tmp="$(mktemp -d)"
{ echo '#include <cuda.h>'; for n in $names; do echo "VERBATIM_SYM $n"; done; } >"$tmp/syms.c"
cc -E -I"$root/include" "$tmp/syms.c" | awk '$1 == "VERBATIM_SYM" { print $2 }' |
  while read -r sym; do echo "int $sym(void) { return 34; /* CUDA_ERROR_STUB_LIBRARY */ }"; done >"$tmp/stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o stubs/libcuda.so "$tmp/stub.c"
rm -rf "$tmp"

cat >"$dest/env.sh" <<EOF
# Source this before: CARGO_TARGET_DIR=target-cuda cargo build --release --features cuda
export CUDA_PATH="$root" CUDAToolkit_ROOT="$root"
export CUDACXX="$root/bin/nvcc" PATH="$root/bin:\$PATH"
export CMAKE_CUDA_ARCHITECTURES="\${CMAKE_CUDA_ARCHITECTURES:-90}"
export RUSTFLAGS="\${RUSTFLAGS:-} -L native=$root/lib -L native=$root/lib/stubs"
EOF
echo "CUDA toolchain in $root; now: source $dest/env.sh"
"$root/bin/nvcc" --version | tail -1
