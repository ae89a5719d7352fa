#!/usr/bin/env bash
# Builds an arm64 sysroot for cross-compiling Whisker and running its arm64
# binaries under qemu-user, from Debian packages, without changing this
# machine's package state: the packages are resolved with private apt states
# (their own sources list, lists, cache and an empty dpkg status), downloaded
# and unpacked with dpkg-deb, never installed. Safe to re-run: downloads are
# cached and checked against cross/arm64.lock, and the sysroot is only
# unpacked again when the lock changes.
#
#   cross/sysroot.sh              all steps (toolchain fetch sysroot check)
#   cross/sysroot.sh STEP...      only those steps
#   cross/sysroot.sh lock         re-resolve the packages and rewrite cross/arm64.lock
#
# What goes in:
#   bookworm arm64   the OpenCV 4.6 runtime libraries gocv links, with their
#                    dependencies, GStreamer's base plugins (the camera
#                    tests' videotestsrc pipeline), and the OpenCV headers
#                    (-dev packages, unpacked without their dependencies)
#   forky arm64      TensorFlow Lite 2.14 (libtensorflow-lite2.14.1 and its
#                    headers in libtensorflow-lite-dev) and the C runtime it
#                    needs (glibc 2.38 or newer, libstdc++ 13 or newer)
#
# Environment:
#   WHISKER_DEPS   where fetched files go (default: <repo>/.deps); the sysroot
#                  is $WHISKER_DEPS/cross/arm64/sysroot
#   WHISKER_CACHE  download cache shared between clones
#                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/whisker)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${WHISKER_DEPS:-$ROOT/.deps}"
CACHE="${WHISKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/whisker}"
CROSS="$DEPS/cross/arm64"
SYSROOT="$CROSS/sysroot"
LINKS="$CROSS/lib"             # unversioned .so links the cross linker is pointed at (-L)
DEBS="$CACHE/debs/arm64"
LOCK="$ROOT/cross/arm64.lock"
TRIPLET=aarch64-linux-gnu
# Bump when the unpacked layout changes, so existing sysroots are rebuilt.
LAYOUT=1

# --- what goes into the sysroot ----------------------------------------------
TOOLCHAIN=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)

MIRROR="http://deb.debian.org/debian"
SECURITY="http://deb.debian.org/debian-security"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
declare -A SOURCES=(
  [bookworm]="deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm main
deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [arch=arm64 signed-by=$KEYRING] $SECURITY bookworm-security main"
  [forky]="deb [arch=arm64 signed-by=$KEYRING] $MIRROR forky main"
)

# The OpenCV modules gocv's main package links (see OPENCV_MODULES in the
# Makefile's Cross section), and the headers opencv2/opencv.hpp includes.
OPENCV_RUNTIME=(core imgproc imgcodecs videoio highgui objdetect features2d flann calib3d dnn photo video)
OPENCV_HEADERS=(core imgproc imgcodecs videoio highgui objdetect features2d flann calib3d dnn photo video ml stitching)

# suite: packages unpacked with their whole dependency closure
declare -A RUNTIME=(
  [bookworm]="$(printf 'libopencv-%s406 ' "${OPENCV_RUNTIME[@]}") gstreamer1.0-plugins-base"
  [forky]="libtensorflow-lite2.14.1 libc6 libstdc++6 libgcc-s1"
)
# suite: packages unpacked for their headers and .so links only
declare -A HEADERS=(
  [bookworm]="$(printf 'libopencv-%s-dev ' "${OPENCV_HEADERS[@]}")"
  [forky]="libtensorflow-lite-dev"
)
# Unpacking order: later suites overwrite earlier ones (forky's C runtime
# replaces bookworm's).
SUITES=(bookworm forky)

# --- helpers ----------------------------------------------------------------
say()  { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*" >&2; }
die()  { printf 'cross/sysroot: %s\n' "$*" >&2; exit 1; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then echo sudo; else die "installing the cross toolchain needs root (or sudo)"; fi
  fi
}

# apt_private SUITE ARGS...: runs apt-get or apt-cache (first arg) against
# the suite's private state in $CROSS/apt/SUITE. The system's sources,
# lists, cache and dpkg status are not read or written.
apt_private() {
  local suite="$1" tool="$2"; shift 2
  local st="$CROSS/apt/$suite"
  "$tool" \
    -o Dir::Etc::SourceList="$st/sources.list" -o Dir::Etc::SourceParts="$st/sources.list.d" \
    -o Dir::Etc::Preferences="$st/preferences" -o Dir::Etc::PreferencesParts="$st/preferences.d" \
    -o Dir::State="$st" -o Dir::State::Lists="$st/lists" -o Dir::State::status="$st/status" \
    -o Dir::Cache="$st/cache" -o Dir::Cache::archives="$st/cache/archives" \
    -o APT::Architecture=arm64 -o APT::Architectures=arm64 \
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
    -o Debug::NoLocking=true -o APT::Sandbox::User=root \
    "$@"
}

# apt_index SUITE [force]: creates the suite's private apt state and reads
# its package lists (again with force).
apt_index() {
  local suite="$1" force="${2:-}" st="$CROSS/apt/$1"
  mkdir -p "$st"/{sources.list.d,preferences.d,lists/partial,cache/archives/partial}
  : > "$st/preferences"
  [ -f "$st/status" ] || : > "$st/status"
  printf '%s\n' "${SOURCES[$suite]}" > "$st/sources.list"
  if [ -z "$force" ] && compgen -G "$st/lists/*_Packages*" >/dev/null; then return; fi
  note "reading the $suite arm64 package lists (private apt state in $st)"
  apt_private "$suite" apt-get update -qq >/dev/null || die "apt-get update of the $suite arm64 lists failed"
}

# stamp: identifies what the sysroot was unpacked from.
stamp() { echo "layout $LAYOUT lock $(sha256sum "$LOCK" | cut -d' ' -f1)"; }

# current FILE: the stamp file FILE in the sysroot matches the lock.
current() { [ -f "$LOCK" ] && [ -f "$SYSROOT/$1" ] && [ "$(cat "$SYSROOT/$1")" = "$(stamp)" ]; }

# deb_name PACKAGE VERSION ARCH: the file name apt-get download writes.
deb_name() { printf '%s_%s_%s.deb' "$1" "${2//:/%3a}" "$3"; }

# --- steps ------------------------------------------------------------------
step_toolchain() {
  say "Cross toolchain and emulator on this machine: ${TOOLCHAIN[*]}"
  local missing=() p
  for p in "${TOOLCHAIN[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then note "all installed"; return; fi
  note "installing: ${missing[*]}"
  local sudo; sudo="$(need_root)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  note "installed"
}

# lock: resolves every suite's closure and writes the lock file.
step_lock() {
  say "Resolving the arm64 packages -> $LOCK"
  local tmp; tmp="$(mktemp)"
  local -A seen=()
  # Later suites win: resolve them first so earlier ones can skip what
  # they provide (the C runtime comes from forky only).
  local i suite
  for ((i = ${#SUITES[@]} - 1; i >= 0; i--)); do
    suite="${SUITES[$i]}"
    apt_index "$suite" force
    note "$suite: dependency closure of ${RUNTIME[$suite]}"
    local pkgs=() line
    # A simulated install against an empty dpkg status lists the whole
    # closure, one alternative picked per dependency, no recommends.
    while read -r line; do pkgs+=("$line"); done < <(
      # shellcheck disable=SC2086
      apt_private "$suite" apt-get -s -qq install --no-install-recommends ${RUNTIME[$suite]} |
        awk '$1 == "Inst" { gsub(/[()]/, "", $3); print $2 "=" $3 }')
    local h
    for h in ${HEADERS[$suite]}; do
      pkgs+=("$h=$(apt_private "$suite" apt-cache show --no-all-versions "$h" | awk '/^Version:/ { print $2; exit }')")
    done
    local kept=()
    for line in "${pkgs[@]}"; do
      [ -n "${seen[${line%%=*}]:-}" ] && continue
      seen[${line%%=*}]=1
      kept+=("$line")
    done
    # name version arch sha256, from the index the packages were resolved with
    apt_private "$suite" apt-cache show --no-all-versions "${kept[@]}" |
      awk -v suite="$suite" '
        /^Package:/ { p = $2 } /^Version:/ { v = $2 } /^Architecture:/ { a = $2 } /^SHA256:/ { s = $2 }
        /^$/ { if (p != "" && !done[p]++) print suite, p, v, a, s; p = "" }
        END { if (p != "" && !done[p]++) print suite, p, v, a, s }' | sort -k2 > "$tmp.$suite"
    note "$suite: $(wc -l < "$tmp.$suite") packages"
  done
  {
    echo "# arm64 packages unpacked into the cross sysroot by cross/sysroot.sh."
    echo "# Written by 'cross/sysroot.sh lock'; every download is checked against it."
    echo "# suite package version architecture sha256"
    for suite in "${SUITES[@]}"; do cat "$tmp.$suite"; done
  } > "$tmp"
  mv "$tmp" "$LOCK"
  rm -f "$tmp".*
  note "wrote $(grep -vc '^#' "$LOCK") packages"
}

# lock_entries: the lock without comments, in unpacking order.
lock_entries() { grep -v '^#' "$LOCK"; }

step_fetch() {
  [ -f "$LOCK" ] || step_lock
  say "Downloading the arm64 packages in $LOCK -> $DEBS"
  if current .whisker-stamp; then
    note "the sysroot is already unpacked from this lock; nothing to download"
    return
  fi
  mkdir -p "$DEBS"
  # One sha256sum over every cached file; what is missing or does not
  # match is downloaded again.
  local -A bad=()
  local f
  while read -r f; do bad[$f]=1; done < <(
    lock_entries | while read -r _ pkg ver arch sha; do
      printf '%s  %s\n' "$sha" "$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
    done | sha256sum -c --quiet 2>/dev/null | sed -n 's/: FAILED.*//p')
  local suite pkg ver arch sha n=0 missing
  for suite in "${SUITES[@]}"; do
    missing=()
    while read -r s pkg ver arch sha; do
      [ "$s" = "$suite" ] || continue
      n=$((n + 1))
      f="$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
      [ -z "${bad[$f]:-}" ] || { rm -f "$f"; missing+=("$pkg=$ver"); }
    done < <(lock_entries)
    [ ${#missing[@]} -eq 0 ] && continue
    apt_index "$suite"
    note "$suite: downloading ${#missing[@]} packages"
    if ! (cd "$DEBS" && apt_private "$suite" apt-get download -qq "${missing[@]}" >/dev/null 2>&1); then
      apt_index "$suite" force   # the lists may be older than the lock
      (cd "$DEBS" && apt_private "$suite" apt-get download -qq "${missing[@]}" >/dev/null) ||
        die "$suite no longer offers some pinned versions (see above); run 'cross/sysroot.sh lock' to pin the current ones and review the diff of cross/arm64.lock"
    fi
  done
  lock_entries | while read -r _ pkg ver arch sha; do
    printf '%s  %s\n' "$sha" "$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
  done | sha256sum -c --quiet || die "checksum mismatch in the downloads (see above)"
  note "ok: $n packages, $(du -sh "$DEBS" | cut -f1) in the cache"
}

step_sysroot() {
  [ -f "$LOCK" ] || die "no $LOCK: run 'cross/sysroot.sh lock'"
  say "Unpacking the sysroot -> $SYSROOT"
  if current .whisker-stamp; then
    note "up to date"
  else
    local tmp="$SYSROOT.tmp"
    rm -rf "$tmp"
    # forky is merged-/usr and bookworm is not: with /lib a link to
    # /usr/lib, both put their libraries in one place and the later suite
    # replaces the earlier one's files.
    mkdir -p "$tmp/usr/lib" "$tmp/usr/bin" "$tmp/usr/sbin"
    ln -s usr/lib "$tmp/lib"
    ln -s usr/bin "$tmp/bin"
    ln -s usr/sbin "$tmp/sbin"
    local suite pkg ver arch sha n=0
    while read -r suite pkg ver arch sha; do
      dpkg-deb --fsys-tarfile "$DEBS/$(deb_name "$pkg" "$ver" "$arch")" |
        tar -x -C "$tmp" --keep-directory-symlink --no-same-owner --exclude='./usr/share/doc/*' \
          --exclude='./usr/share/man/*' --exclude='./usr/share/locale/*' ||
        die "unpacking $pkg $ver failed"
      n=$((n + 1))
    done < <(lock_entries)
    # update-alternatives would make these links when the packages are
    # installed; unpacking skips maintainer scripts.
    local d="$tmp/usr/lib/$TRIPLET"
    [ -e "$d/libblas.so.3" ] || ln -s blas/libblas.so.3 "$d/libblas.so.3"
    [ -e "$d/liblapack.so.3" ] || ln -s lapack/liblapack.so.3 "$d/liblapack.so.3"
    stamp > "$tmp/.whisker-stamp"
    rm -rf "$SYSROOT"
    mv "$tmp" "$SYSROOT"
    note "unpacked $n packages ($(du -sh "$SYSROOT" | cut -f1))"
  fi

  # The libraries the cross linker is pointed at, under the names it
  # looks for: go-tflite links -ltensorflowlite_c (Debian names the
  # library libtensorflow-lite), gocv links -lopencv_<module>.
  rm -rf "$LINKS"
  mkdir -p "$LINKS"
  local lib="$SYSROOT/usr/lib/$TRIPLET" rel="../sysroot/usr/lib/$TRIPLET"
  [ -f "$lib/libtensorflow-lite.so.2.14.1" ] || die "libtensorflow-lite.so.2.14.1 is missing from the sysroot"
  ln -s "$rel/libtensorflow-lite.so.2.14.1" "$LINKS/libtensorflowlite_c.so"
  local m
  for m in "${OPENCV_RUNTIME[@]}"; do
    local so; so="$(cd "$lib" && ls libopencv_"$m".so.4.6.* 2>/dev/null | head -n1)"
    [ -n "$so" ] || die "libopencv_$m.so.4.6 is missing from the sysroot"
    ln -s "$rel/$so" "$LINKS/libopencv_$m.so"
  done
  note "linker directory: $LINKS"
}

# check: every library the cross build links, and everything those need,
# resolves inside the sysroot; the TensorFlow Lite library is 2.14.
step_check() {
  say "Checking the sysroot"
  if current .whisker-checked; then
    note "checked since it was unpacked"
    return
  fi
  command -v "$TRIPLET-readelf" >/dev/null || die "$TRIPLET-readelf not found: run 'cross/sysroot.sh toolchain'"
  local dirs=("$SYSROOT/usr/lib/$TRIPLET" "$SYSROOT/usr/lib")
  local -A done=()
  local queue=() missing=() so name d found
  for so in "$LINKS"/*.so; do queue+=("$(readlink -f "$so")"); done
  while [ ${#queue[@]} -gt 0 ]; do
    so="${queue[0]}"; queue=("${queue[@]:1}")
    [ -n "${done[$so]:-}" ] && continue
    done[$so]=1
    while read -r name; do
      found=""
      for d in "${dirs[@]}"; do
        if [ -e "$d/$name" ]; then found="$(readlink -f "$d/$name")"; break; fi
      done
      if [ -z "$found" ]; then missing+=("$name (needed by ${so##*/})"); continue; fi
      queue+=("$found")
    done < <("$TRIPLET-readelf" -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  done
  [ ${#missing[@]} -eq 0 ] || die "libraries missing from the sysroot: ${missing[*]}"
  [ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] || die "no dynamic loader at $SYSROOT/lib/ld-linux-aarch64.so.1"
  note "ok: ${#done[@]} shared libraries resolve inside the sysroot"
  stamp > "$SYSROOT/.whisker-checked"
  note "C library $(awk '$2 == "libc6" { print $3 " (" $1 ")" }' "$LOCK"), TensorFlow Lite $(awk '$2 == "libtensorflow-lite2.14.1" { print $3 " (" $1 ")" }' "$LOCK")"
}

main() {
  local steps=("$@")
  [ ${#steps[@]} -eq 0 ] && steps=(toolchain fetch sysroot check)
  mkdir -p "$CROSS" "$CACHE"
  for s in "${steps[@]}"; do
    case "$s" in
      toolchain|lock|fetch|sysroot|check) "step_$s" ;;
      *) die "unknown step '$s' (steps: toolchain lock fetch sysroot check)" ;;
    esac
  done
}

main "$@"
