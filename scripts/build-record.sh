#!/usr/bin/env bash
# Writes the build record of a whisker binary as JSON on standard output:
# what was built (version, commit, target, Go), against which TensorFlow Lite
# library, and the versions of the Debian packages it was built with. The
# Makefile embeds it in the binary (`whisker version --record`); the Debian
# package and the signed update bundle carry the same record.
#
#   scripts/build-record.sh --arch ARCH --version V --tflite DESC
#       [--packages FILE [--lock LOCK]] [--host-packages "PKG..."]
#
#   --packages FILE       packages of a sysroot, in the lock format
#                         (suite package version architecture [sha256])
#   --lock LOCK           the lock they were resolved from; the record names
#                         it and every difference
#   --host-packages LIST  Debian packages of this machine whose libraries the
#                         build links (native builds); one that is not
#                         installed is recorded as such
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf 'build-record: %s\n' "$*" >&2; exit 1; }

arch="" version="" tflite="" packages="" lock="" host=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --tflite) tflite="$2"; shift 2 ;;
    --packages) packages="$2"; shift 2 ;;
    --lock) lock="$2"; shift 2 ;;
    --host-packages) host="$2"; shift 2 ;;
    *) die "unknown argument '$1' (see the head of $0)" ;;
  esac
done
[ -n "$arch" ] && [ -n "$version" ] && [ -n "$tflite" ] || die "--arch, --version and --tflite are required"
[ -z "$packages" ] || [ -f "$packages" ] || die "--packages $packages: no such file"
[ -z "$lock" ] || [ -f "$lock" ] || die "--lock $lock: no such file"
[ -z "$lock" ] || [ -n "$packages" ] || die "--lock needs --packages"

# JSON string; the values here are names, versions and paths.
str() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }
# arr INDENT: a JSON array of the lines on standard input, one per line,
# closed at INDENT.
arr() {
  local first=1 line
  printf '['
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    [ $first -eq 1 ] || printf ','
    first=0
    printf '\n%s  %s' "$1" "$(str "$line")"
  done
  [ $first -eq 1 ] || printf '\n%s' "$1"
  printf ']'
}

commit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
modified=false
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || modified=true
gover="$(go env GOVERSION 2>/dev/null || echo unknown)"

pkg_lines() {
  if [ -n "$packages" ]; then
    grep -v '^#' "$packages" | awk 'NF >= 4 { print $1, $2, $3, $4 }'
  fi
  if [ -n "$host" ]; then
    local p
    for p in $host; do
      # A library built by hand (TFLITE_DIR, an OpenCV of one's own) is
      # said so, not left out.
      dpkg-query -W -f='host ${Package} ${Version} ${Architecture}\n' "$p" 2>/dev/null ||
        echo "host $p (not installed: the build links a library from elsewhere)"
    done
  fi
}

# The same comparison as cross/sysroot.sh makes, on these two files.
lock_diffs() {
  awk 'FNR == 1 { f++ } /^#/ || NF < 3 { next }
    f == 1 { lock[$1 " " $2] = $3; next }
    { now[$1 " " $2] = $3 }
    END {
      for (k in now) if (!(k in lock)) print k, "(not in the lock)", "->", now[k]
      else if (lock[k] != now[k]) print k, lock[k], "->", now[k]
      for (k in lock) if (!(k in now)) print k, lock[k], "->", "(not used)"
    }' "$lock" "$packages" | sort -k2,2
}

{
  printf '{\n'
  printf '  "format": 1,\n'
  printf '  "version": %s,\n' "$(str "$version")"
  printf '  "commit": %s,\n' "$(str "$commit")"
  printf '  "modified": %s,\n' "$modified"
  printf '  "target": %s,\n' "$(str "linux/$arch")"
  printf '  "go": %s,\n' "$(str "$gover")"
  printf '  "tflite": %s,\n' "$(str "$tflite")"
  printf '  "packages": %s' "$(pkg_lines | sort -k2,2 | arr '  ')"
  if [ -n "$lock" ]; then
    printf ',\n  "lock": {\n'
    printf '    "file": %s,\n' "$(str "${lock#"$ROOT/"}")"
    printf '    "sha256": %s,\n' "$(str "$(sha256sum "$lock" | cut -d' ' -f1)")"
    printf '    "differs": %s\n' "$(lock_diffs | arr '    ')"
    printf '  }'
  fi
  printf '\n}\n'
}
