#!/usr/bin/env bash
# Compiles every program in bpf/ into bpf/dist/ and records the hash of the
# sources each object was built from, so a test can tell a stale object.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
arch_inc=/usr/include/$(uname -m)-linux-gnu
mkdir -p bpf/dist
for src in bpf/*.c; do
  name=$(basename "$src" .c)
  "$CLANG" -O2 -g -target bpf -Wall -Werror -I"$arch_inc" -Ibpf/include -c "$src" -o "bpf/dist/$name.o"
  # BTF stays for bpftool and the codec check; DWARF line info is dead weight in the package.
  llvm-strip -g "bpf/dist/$name.o" 2>/dev/null || true
  echo "built bpf/dist/$name.o"
done
node scripts/bpf-hashes.mjs write
