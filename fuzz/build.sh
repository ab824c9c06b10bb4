#!/usr/bin/env bash
# Build the libFuzzer harnesses with clang, ASan and UBSan (`make fuzz`).
# Usage: fuzz/build.sh SRCDIR BUILDDIR   (BUILDDIR holds config.h)
# The flags of the project's dependencies come from the environment
# (make passes HDF5_CFLAGS, HDF5_LIBS, TIFF_*, PNG_*, DNNL_LIBS).
# Output: BUILDDIR/fuzz-build/fuzz_<name> and BUILDDIR/fuzz-build/seeds/<name>/.
set -euo pipefail
src=$(cd "$1" && pwd)
top=$(cd "$2" && pwd)
out=$top/fuzz-build
CLANG=${CLANG:-clang}
mkdir -p "$out/obj"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="-std=c11 -D_GNU_SOURCE -O1 -g -fopenmp -w -I$src -I$top ${HDF5_CFLAGS:-} ${TIFF_CFLAGS:-} ${PNG_CFLAGS:-}"
libs="${DNNL_LIBS:--ldnnl} ${HDF5_LIBS:--lhdf5} ${TIFF_LIBS:--ltiff} ${PNG_LIBS:--lpng16} -lm -lpthread"
# Everything but main() -- the same set as libcellcount.a, instrumented.
# An object is rebuilt when its .c or any header is newer than it (a struct
# that changed in a header must not be linked against objects built for
# its old layout; no per-file dependency lists here, so any header counts).
newest_h=$top/config.h
for h in "$src"/autodiff/*.h "$src"/models/*.h "$src"/src/*/*.h; do
    if [ "$h" -nt "$newest_h" ]; then newest_h=$h; fi
done
objs=()
for f in "$src"/autodiff/*.c "$src"/models/*.c "$src"/src/*/*.c; do
    case $f in */src/cli/main.c) continue ;; esac
    o=$out/obj/$(echo "${f#$src/}" | tr / _).o
    if [ ! -e "$o" ] || [ "$f" -nt "$o" ] || [ "$newest_h" -nt "$o" ]; then
        $CLANG $cflags $san -fsanitize=fuzzer-no-link -c "$f" -o "$o"
    fi
    objs+=("$o")
done
rm -f "$out/libcellcount-fuzz.a"
ar rcs "$out/libcellcount-fuzz.a" "${objs[@]}"
# The harnesses reach into the library's structs: a type that changed under
# them must stop the build, not be read through the wrong type.
hflags="${cflags/ -w / } -Werror=incompatible-pointer-types -Werror=int-conversion \
    -Werror=implicit-function-declaration"
for h in tiff ini bbbc runlog dataset checkpoint; do
    $CLANG $hflags $san -fsanitize=fuzzer "$src/fuzz/fuzz_$h.c" "$out/libcellcount-fuzz.a" \
        $libs -o "$out/fuzz_$h"
done
# Seeds: made by our own writers (instrumented too), plus the crafted files.
$CLANG $hflags $san "$src/fuzz/seeds.c" "$out/libcellcount-fuzz.a" $libs -o "$out/fuzz-seeds"
rm -rf "$out/seeds"
ASAN_OPTIONS=detect_leaks=0 "$out/fuzz-seeds" "$out/seeds"
cp "$src"/experiments/*.ini "$out/seeds/ini/" 2>/dev/null || true
echo "fuzz: harnesses in $out (run: $src/fuzz/run.sh $out SECONDS)"
