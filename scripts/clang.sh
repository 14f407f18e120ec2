#!/usr/bin/env bash
# The one place that names the pinned compiler: build:bpf, the tests' fixtures and
# the bench all ask this script. Prints the path of clang (or, with `strip`, of
# llvm-strip) of the pinned major version, honouring $CLANG / $STRIP; or says in
# one line what to install and exits 1.
# The pin: Debian bookworm's clang 14. Another major version emits other
# instructions, and the committed objects would no longer be what the sources build to.
set -euo pipefail
CLANG_MAJOR=14
clang=${CLANG:-clang-$CLANG_MAJOR}
have=$("$clang" --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\)\..*/\1/p' | head -1) || true
if [ "$have" != "$CLANG_MAJOR" ]; then
  echo "needs clang $CLANG_MAJOR ($clang gives '${have:-nothing}'): install clang-$CLANG_MAJOR (bash scripts/setup.sh)" >&2
  exit 1
fi
case "${1:-clang}" in
  clang) command -v "$clang" ;;
  strip)
    strip=${STRIP:-llvm-strip-$CLANG_MAJOR}
    command -v "$strip" || { echo "needs $strip: install llvm-$CLANG_MAJOR (bash scripts/setup.sh)" >&2; exit 1; } ;;
  *) echo "usage: scripts/clang.sh [clang|strip]" >&2; exit 2 ;;
esac
