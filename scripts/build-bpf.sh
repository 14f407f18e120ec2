#!/usr/bin/env bash
# Compiles every program in bpf/ into bpf/dist/ (or $OUT) with the pinned
# compiler, and records the hash of the sources each object was built from.
# The build is reproducible: test/unit/bpf-objects.test.ts rebuilds into a
# temp dir and compares the objects, section by section, with bpf/dist.
set -euo pipefail
cd "$(dirname "$0")/.."
# The pinned compiler: Debian bookworm's clang 14. Another major version emits
# other instructions, and the committed objects would no longer be what the
# sources build to.
CLANG_MAJOR=14
CLANG=${CLANG:-clang-$CLANG_MAJOR}
STRIP=${STRIP:-llvm-strip-$CLANG_MAJOR}
OUT=${OUT:-bpf/dist}
have=$("$CLANG" --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\)\..*/\1/p' | head -1) || true
if [ "$have" != "$CLANG_MAJOR" ]; then
  echo "build:bpf: needs clang $CLANG_MAJOR ($CLANG gives '${have:-nothing}'): install clang-$CLANG_MAJOR (scripts/setup.sh)" >&2
  exit 1
fi
arch_inc=/usr/include/$(uname -m)-linux-gnu
mkdir -p "$OUT"
for src in bpf/*.c; do
  name=$(basename "$src" .c)
  # -fdebug-prefix-map: BTF names the source file; without it the checkout's path ends up in the object.
  "$CLANG" -O2 -g -target bpf -Wall -Werror -I"$arch_inc" -Ibpf/include -fdebug-prefix-map="$PWD"=. \
    -c "$src" -o "$OUT/$name.o"
  # BTF stays for bpftool and the codec check; DWARF line info is dead weight in the package.
  "$STRIP" -g "$OUT/$name.o"
  echo "built $OUT/$name.o"
done
if [ "$OUT" = bpf/dist ]; then node scripts/bpf-hashes.mjs write; fi
