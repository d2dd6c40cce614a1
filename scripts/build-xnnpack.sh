#!/usr/bin/env bash
# Builds a modern XNNPACK (qd8 dynamic-int8 and qc4w int4 fully-connected operators) from Debian's own
# source archive, because Debian 12's libxnnpack-dev (2022) lacks those operators and Debian 13's binary
# needs a newer glibc. The result is cached outside the build tree:
#   $MIKV_DEPS_PREFIX (default ~/.cache/mikv-deps/xnnpack-<version>)
# and CMake finds it through -DMIKV_XNNPACK_PREFIX (scripts/setup.sh passes it).
#
# Why these versions: they are the ones that build together with bookworm's gcc 12.2; bookworm's own
# cpuinfo/pthreadpool are too old for this XNNPACK (see the project notes on XNNPACK).
set -euo pipefail

XNNPACK_VER=0.0~git20241108.4ea82e5-2
PTHREADPOOL_VER=0.0~git20240616.560c60d-1
CPUINFO_VER=0.0~git20250905.877328f-1
FXDIV_VER=0.0~git20200417.b408327-4   # header only; pthreadpool would otherwise clone it from the network

CACHE_ROOT=${MIKV_DEPS_CACHE:-$HOME/.cache/mikv-deps}
PREFIX=${MIKV_DEPS_PREFIX:-$CACHE_ROOT/xnnpack-4ea82e5}
TOOLCHAIN=${MIKV_XNNPACK_TOOLCHAIN:-}   # optional CMake toolchain file (aarch64 cross build)
JOBS=${JOBS:-$(nproc)}

if [[ -f "$PREFIX/.complete" ]]; then
  echo "xnnpack: cached at $PREFIX"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mikv-xnnpack.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A private apt configuration with deb-src lines for trixie and sid, so /etc/apt stays untouched.
# The mirror is whatever this machine's apt already uses.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [[ -z "$mirror" ]]; then
  mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[[ -n "$mirror" ]] || { echo "xnnpack: cannot find the Debian mirror in /etc/apt" >&2; exit 1; }

apt_dir=$work/apt
mkdir -p "$CACHE_ROOT/src"   # verified upstream tarballs, kept so a rebuild needs no download
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/sources.list.d"
cat > "$apt_dir/etc/sources.list" <<EOF
deb-src [trusted=yes] $mirror trixie main
deb-src [trusted=yes] $mirror sid main
EOF
APT_OPTS=(-o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o "APT::Get::AllowUnauthenticated=true"
          -o "Acquire::AllowInsecureRepositories=true")
echo "xnnpack: reading Debian's source index"
apt-get "${APT_OPTS[@]}" update -qq

# fetch PKG VERSION: download the upstream .orig tarball and verify it against the index's sha256.
# apt-get source exits non-zero here because the .dsc answers 404; the checksum is what we trust.
fetch() {
  local pkg=$1 ver=$2 upstream=${2%-*}
  local tarball
  tarball=$(ls "$CACHE_ROOT/src/${pkg}_${upstream}.orig.tar."* 2>/dev/null | head -n1)
  if [[ -z "$tarball" ]]; then
    (cd "$CACHE_ROOT/src" && apt-get "${APT_OPTS[@]}" source --download-only "$pkg=$ver" >/dev/null 2>&1 || true)
    tarball=$(ls "$CACHE_ROOT/src/${pkg}_${upstream}.orig.tar."* 2>/dev/null | head -n1)
  fi
  [[ -n "$tarball" ]] || { echo "xnnpack: could not fetch $pkg $ver" >&2; exit 1; }
  local want
  # The index may list several versions of the package: take the stanza whose Version matches.
  want=$(apt-cache "${APT_OPTS[@]}" showsrc "$pkg" | awk -v v="$ver" -v n="$(basename "$tarball")" '
      /^Package:/ {ver=""} /^Version:/ {ver=$2}
      /^Checksums-Sha256:/ {f=1; next}
      f && /^ / { if (ver==v && $3==n) {print $1; exit} next }
      {f=0}')
  local got
  got=$(sha256sum "$tarball" | cut -d' ' -f1)
  [[ -n "$want" && "$want" == "$got" ]] || { echo "xnnpack: checksum mismatch for $tarball (want '$want', got $got)" >&2; exit 1; }
  echo "$tarball"
}

src=$work/src
mkdir -p "$src/xnnpack" "$src/pthreadpool" "$src/cpuinfo" "$src/fxdiv"
echo "xnnpack: fetching sources"
tar -xf "$(fetch cpuinfo "$CPUINFO_VER")" -C "$src/cpuinfo" --strip-components=1
tar -xf "$(fetch fxdiv "$FXDIV_VER")" -C "$src/fxdiv" --strip-components=1
tar -xf "$(fetch pthreadpool "$PTHREADPOOL_VER")" -C "$src/pthreadpool" --strip-components=1
tar -xf "$(fetch xnnpack "$XNNPACK_VER")" -C "$src/xnnpack"   # this tarball has no top-level folder

common=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_INSTALL_PREFIX="$PREFIX"
        -DCMAKE_INSTALL_LIBDIR=lib)
[[ -n "$TOOLCHAIN" ]] && common+=(-DCMAKE_TOOLCHAIN_FILE="$TOOLCHAIN")

echo "xnnpack: building cpuinfo"
cmake -S "$src/cpuinfo" -B "$work/b-cpuinfo" "${common[@]}" -DCPUINFO_LIBRARY_TYPE=static \
  -DCPUINFO_BUILD_UNIT_TESTS=OFF -DCPUINFO_BUILD_MOCK_TESTS=OFF -DCPUINFO_BUILD_BENCHMARKS=OFF \
  -DCPUINFO_BUILD_TOOLS=OFF >/dev/null
cmake --build "$work/b-cpuinfo" -j "$JOBS" >/dev/null
cmake --install "$work/b-cpuinfo" >/dev/null

echo "xnnpack: building pthreadpool"
cmake -S "$src/pthreadpool" -B "$work/b-pthreadpool" "${common[@]}" -DPTHREADPOOL_LIBRARY_TYPE=static \
  -DPTHREADPOOL_BUILD_TESTS=OFF -DPTHREADPOOL_BUILD_BENCHMARKS=OFF \
  -DFXDIV_SOURCE_DIR="$src/fxdiv" \
  -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$work/b-pthreadpool" -j "$JOBS" >/dev/null
cmake --install "$work/b-pthreadpool" >/dev/null

echo "xnnpack: building XNNPACK (a few minutes)"
cmake -S "$src/xnnpack" -B "$work/b-xnnpack" "${common[@]}" -DXNNPACK_LIBRARY_TYPE=static \
  -DXNNPACK_BUILD_TESTS=OFF -DXNNPACK_BUILD_BENCHMARKS=OFF -DXNNPACK_BUILD_ALL_MICROKERNELS=OFF \
  -DXNNPACK_USE_SYSTEM_LIBS=ON -DXNNPACK_ENABLE_KLEIDIAI=OFF \
  -DCPUINFO_SOURCE_DIR="$PREFIX" -DPTHREADPOOL_SOURCE_DIR="$PREFIX" -DFXDIV_SOURCE_DIR="$src/fxdiv" \
  -DCPUINFO_LIBRARY="$PREFIX/lib/libcpuinfo.a" \
  -DPTHREADPOOL_LIBRARY="$PREFIX/lib/libpthreadpool.a" >/dev/null
cmake --build "$work/b-xnnpack" -j "$JOBS" --target XNNPACK microkernels-prod >/dev/null

mkdir -p "$PREFIX/lib" "$PREFIX/include"
cp "$src/xnnpack/include/xnnpack.h" "$PREFIX/include/"
find "$work/b-xnnpack" -name 'libXNNPACK.a' -exec cp {} "$PREFIX/lib/" \;
find "$work/b-xnnpack" -name 'libmicrokernels-prod.a' -exec cp {} "$PREFIX/lib/" \;
[[ -f "$PREFIX/lib/libXNNPACK.a" && -f "$PREFIX/lib/libmicrokernels-prod.a" ]] || {
  echo "xnnpack: build produced no libraries" >&2; exit 1; }
touch "$PREFIX/.complete"
echo "xnnpack: installed into $PREFIX"
