#!/usr/bin/env bash
# Checks Debian packages with Debian's lintian (installed first if missing)
# and prints a summary. Errors fail; every warning that is expected is
# overridden in the package, with the reason (packaging/deb/README.md).
#
#   packaging/deb/lint.sh DEB...
set -euo pipefail

die() { printf 'packaging/deb/lint: %s\n' "$*" >&2; exit 1; }
[ $# -gt 0 ] || die "name the .deb files"
if ! command -v lintian >/dev/null; then
  echo "==> installing Debian's lintian"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "installing lintian needs root (or sudo): apt-get install lintian"
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi
status=0
summary=()
for deb in "$@"; do
  [ -f "$deb" ] || die "$deb: no such file"
  echo "==> lintian $(basename "$deb")"
  # Overridden tags are shown (O:) but do not fail; lintian itself would
  # count overridden errors once they are shown.
  out="$(lintian --display-info --show-overrides --tag-display-limit 0 --fail-on none "$deb" 2>&1)" ||
    die "lintian could not check $deb: $out"
  [ -z "$out" ] || printf '%s\n' "$out" | grep -v '^running with root privileges' | sed 's/^/    /'
  count() { printf '%s\n' "$out" | grep -c "^$1: " || true; }
  [ "$(count E)" -eq 0 ] || status=1
  summary+=("$(printf '%-40s errors %s, warnings %s, info %s, overridden %s' "$(basename "$deb")" \
    "$(count E)" "$(count W)" "$(count I)" "$(count O)")")
done
echo "==> lintian summary ($(lintian --version))"
printf '    %s\n' "${summary[@]}"
[ $status -eq 0 ] || die "lintian found errors (above)"
