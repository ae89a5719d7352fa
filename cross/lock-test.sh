#!/usr/bin/env bash
# Checks that the arm64 sysroot builds from a lock that Debian can no longer
# satisfy: a lock naming a version that does not exist, and a package that
# does not exist, gives warnings that show the difference, and the build
# record says which versions were used instead. (`make cross-lock-test`)
#
#   cross/lock-test.sh               run the check
#   cross/lock-test.sh --write FILE  only write such a lock, e.g. for
#                                    make cross-test CROSS_LOCK=FILE
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${WHISKER_DEPS:-$ROOT/.deps}"
SYSROOT="$DEPS/cross/arm64/sysroot"
LOCK="$ROOT/cross/arm64.lock"
# A package every sysroot has, pinned at a version Debian never made, and
# a package Debian does not have.
PKG=libopencv-core406
FAKE_VERSION=0.0.0~no.such.version
FAKE_PKG=whisker-no-such-package

fail() { printf 'cross/lock-test: FAIL: %s\n' "$*" >&2; exit 1; }

write_lock() {
  grep -q "^bookworm $PKG " "$LOCK" || fail "$LOCK does not name $PKG"
  awk -v p="$PKG" -v v="$FAKE_VERSION" '$2 == p { $3 = v } { print }' "$LOCK" > "$1"
  echo "bookworm $FAKE_PKG 1.0-1 arm64 0000000000000000000000000000000000000000000000000000000000000000" >> "$1"
}

if [ "${1:-}" = --write ]; then
  [ -n "${2:-}" ] || fail "--write needs a file name"
  write_lock "$2"
  echo "$2"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
write_lock "$tmp/broken.lock"

echo "==> the sysroot from a lock naming $PKG $FAKE_VERSION and the package $FAKE_PKG"
set +e
WHISKER_CROSS_LOCK="$tmp/broken.lock" "$ROOT/cross/sysroot.sh" resolve fetch sysroot check > "$tmp/out" 2>&1
rc=$?
set -e
cat "$tmp/out"
[ $rc -eq 0 ] || fail "cross/sysroot.sh exited with $rc: a lock Debian cannot satisfy must not stop the build"

grep -q "warning:.*differ from" "$tmp/out" || fail "no warning that the packages differ from the lock"
used="$(awk -v p="$PKG" '$2 == p { print $3 }' "$SYSROOT/.whisker-packages")"
[ -n "$used" ] && [ "$used" != "$FAKE_VERSION" ] || fail "the sysroot has $PKG '${used}', want the version Debian serves"
awk -v p="$PKG" -v f="$FAKE_VERSION" -v u="$used" '$2 == p && $3 == f && $4 == "->" && $5 == u { ok = 1 } END { exit !ok }' "$tmp/out" ||
  fail "the warning does not show $PKG $FAKE_VERSION -> $used"
grep -q "no longer offers $FAKE_PKG" "$tmp/out" || fail "no warning that $FAKE_PKG is not offered"

echo "==> the build record names the lock and every difference"
"$ROOT/scripts/build-record.sh" --arch arm64 --version 0.0.0-lock.test --tflite test \
  --packages "$SYSROOT/.whisker-packages" --lock "$tmp/broken.lock" > "$tmp/record.json"
python3 - "$tmp/record.json" "$PKG" "$FAKE_VERSION" "$used" "$FAKE_PKG" <<'EOF' || fail "build record (above)"
import json, sys
rec = json.load(open(sys.argv[1]))
pkg, fake, used, gone = sys.argv[2:]
assert f"bookworm {pkg} {used} arm64" in rec["packages"], f"{pkg} {used} not among the packages"
differs = rec["lock"]["differs"]
assert f"bookworm {pkg} {fake} -> {used}" in differs, differs
assert f"bookworm {gone} 1.0-1 -> (not used)" in differs, differs
print(f"    packages: {len(rec['packages'])}; differs: " + "; ".join(differs))
EOF
echo "==> cross/lock-test passed"
