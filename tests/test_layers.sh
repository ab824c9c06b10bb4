#!/usr/bin/env bash
# test_layers.sh - the include layering of docs/ARCHITECTURE.md: every
# `#include "dir/..."` in autodiff/, models/ and src/<folder>/ must name a
# folder that the including folder may use.  Fails listing the offenders.
set -u
top=${CC_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$top" || exit 1
# folder -> the folders it may include (its own is always allowed)
allowed() {
    case $1 in
    autodiff) echo "" ;;
    models) echo "autodiff" ;;
    src/data) echo "autodiff" ;;
    src/run) echo "src/data models autodiff" ;;
    src/sim) echo "src/data autodiff" ;;
    src/train) echo "src/run src/data models autodiff" ;;
    src/infer) echo "src/train src/run src/data models autodiff" ;;
    src/sweep) echo "src/train src/run src/data models autodiff" ;;
    src/cli) echo "src/sweep src/infer src/train src/sim src/run src/data models autodiff" ;;
    *) echo "?" ;;
    esac
}
fail=0
n=0
for f in autodiff/*.[ch] models/*.[ch] src/*/*.[ch]; do
    dir=${f%/*}
    ok=$(allowed "$dir")
    if [ "$ok" = "?" ]; then
        echo "FAIL: $f is in a folder docs/ARCHITECTURE.md does not list"
        fail=1
        continue
    fi
    while IFS= read -r inc; do
        n=$((n + 1))
        case $inc in config.h | */*) ;; *) continue ;; esac   # same-folder short form
        [ "$inc" = config.h ] && continue
        idir=${inc%/*}
        [ "$idir" = "$dir" ] && continue
        case " $ok " in *" $idir "*) continue ;; esac
        echo "FAIL: $f includes $inc ($dir may include: ${ok:-nothing outside itself})"
        fail=1
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done
[ -d src ] && ls src/*.[ch] >/dev/null 2>&1 && { echo "FAIL: files directly in src/ (give them a folder)"; fail=1; }
[ $n -gt 100 ] || { echo "FAIL: only $n includes seen: wrong directory?"; fail=1; }
[ $fail = 0 ] && echo "ok: $n includes follow docs/ARCHITECTURE.md"
exit $fail
