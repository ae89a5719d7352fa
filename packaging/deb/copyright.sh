#!/usr/bin/env bash
# Writes the package's /usr/share/doc/whisker/copyright on standard output:
# who holds the rights to each part of the package and under which licence,
# with the licence texts of the Go modules linked into the binary, and, for
# libraries taken from Debian packages, those packages' own copyright files.
#
#   packaging/deb/copyright.sh --arch ARCH --binary BIN [--debian PKG=DEB...]
set -euo pipefail

die() { printf 'packaging/deb/copyright: %s\n' "$*" >&2; exit 1; }

arch="" binary="" debian=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --debian) debian+=("$2"); shift 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[ -n "$arch" ] && [ -f "$binary" ] || die "--arch and --binary are required"
command -v go >/dev/null || die "go not found (it reads the module list of the binary)"

rule() { printf '\n%s\n%s\n\n' "$1" "$(printf '%*s' "${#1}" '' | tr ' ' '=')"; }

cat <<'EOF'
Whisker: a camera agent that learns to recognise your pets.

This file lists the parts of the package, who holds the rights to each and
under which licence; the texts follow.

Whisker itself (/usr/bin/whisker, built from the Whisker sources, and the
package's scripts, unit and configuration)
  Copyright: the Whisker authors.
  Licence: the Whisker sources do not declare a licence yet.

The backbones (/usr/share/whisker/models/)
  Cut by `whisker model cut` from the SSD-MobileNetV2 detector trained on
  Open Images v4 (object_detection_ssd_mobilenetv2_oidv4_fp16.tflite), as
  shipped by MediaPipe in the npm package @mediapipe/objectron
  0.4.1675468480.
  Copyright: Google LLC (the MediaPipe authors).
  Licence: Apache-2.0, see /usr/share/common-licenses/Apache-2.0.
EOF

case "$arch" in
  amd64)
    cat <<'EOF'

TensorFlow Lite (/usr/lib/whisker/libtensorflowlite_c.so)
  The TensorFlow Lite 2.2.0 C library for linux x86-64, as shipped in the npm
  package node-tflite 0.0.2.
  Copyright: The TensorFlow Authors.
  Licence: Apache-2.0, see /usr/share/common-licenses/Apache-2.0.
EOF
    ;;
  *)
    cat <<'EOF'

TensorFlow Lite and the runtime it was built for (/usr/lib/whisker/)
  Unchanged libraries from Debian's packages, listed in the package's
  Built-Using field (their sources are in the Debian archive under those
  names and versions). Each package's own copyright file follows at the end.
EOF
    ;;
esac

cat <<'EOF'

Go and the Go modules linked into /usr/bin/whisker
  Listed below with their versions; each module's licence files follow.
EOF
mods="$(go version -m "$binary" | awk '$1 == "dep" { print $2, $3 }')"
[ -n "$mods" ] || die "$binary lists no Go modules (go version -m)"
printf '%s\n' "$mods" | sed 's/^/    /'

gomod="$(go env GOMODCACHE)"
rule "Go ($(go env GOVERSION))"
cat "$(go env GOROOT)/LICENSE"
while read -r mod ver; do
  # The module cache spells capitals as '!' and the lower-case letter.
  dir="$gomod/$(printf '%s' "$mod" | sed 's/[A-Z]/!\L&/g')@$ver"
  [ -d "$dir" ] || die "module $mod $ver is not in the module cache ($dir): run 'go mod download'"
  files="$(cd "$dir" && ls | grep -iE '^(licen[cs]e|copying|notice)' || true)"
  [ -n "$files" ] || die "module $mod $ver has no licence file"
  for f in $files; do
    [ -f "$dir/$f" ] || continue
    rule "$mod $ver: $f"
    # Debian systems have the Apache licence's text; point at it.
    if head -n 12 "$dir/$f" | grep -q 'Apache License' && head -n 12 "$dir/$f" | grep -q 'Version 2\.0'; then
      echo "Apache-2.0, see /usr/share/common-licenses/Apache-2.0."
    else
      cat "$dir/$f"
    fi
  done
done <<<"$mods"

for entry in ${debian[@]+"${debian[@]}"}; do
  pkg="${entry%%=*}" deb="${entry#*=}"
  [ -f "$deb" ] || die "$deb: no such file"
  text="$(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/share/doc/$pkg/copyright" 2>/dev/null)" ||
    die "$deb holds no ./usr/share/doc/$pkg/copyright"
  rule "Debian package $pkg ($(dpkg-deb -f "$deb" Version)): its copyright file"
  printf '%s\n' "$text"
done
