#!/usr/bin/env bash
# Compiles every program in bpf/ into bpf/dist/ (or $OUT) with the pinned
# compiler, and records the hash of the sources each object was built from.
# The build is reproducible: test/unit/bpf-objects.test.ts rebuilds into a
# temp dir and compares the objects, section by section, with bpf/dist.
set -euo pipefail
cd "$(dirname "$0")/.."
# The pinned compiler and its strip, from the one script that names them.
CLANG=$(bash scripts/clang.sh) || exit 1
STRIP=$(bash scripts/clang.sh strip) || exit 1
OUT=${OUT:-bpf/dist}
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
