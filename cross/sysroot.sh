#!/usr/bin/env bash
# Builds an arm64 sysroot for cross-compiling Whisker and running its arm64
# binaries under qemu-user, from Debian packages, without changing this
# machine's package state: the packages are resolved with private apt states
# (their own sources list, lists, cache and an empty dpkg status), downloaded
# and unpacked with dpkg-deb, never installed.
#
# What goes in is what Debian serves today. apt checks every index against
# Debian's signed Release files and every download against the index's
# sha256; the versions used are written to a record, and compared with
# cross/arm64.lock, the versions last reviewed. When they differ (Debian
# replaces a version with every security update and stops serving the old
# one) the build goes on with a warning that shows the difference: a lock
# naming a version or a package that no longer exists never stops it.
# Safe to re-run: downloads are cached, and the sysroot is only unpacked
# again when the resolved versions change.
#
#   cross/sysroot.sh              all steps (toolchain resolve fetch sysroot check)
#   cross/sysroot.sh STEP...      only those steps
#   cross/sysroot.sh lock         resolve again and write the result to the lock
#   cross/sysroot.sh diff         print how the sysroot differs from the lock
#   cross/sysroot.sh manifest SUITE...
#                                 the sysroot's packages of those suites and
#                                 their files (what Debian packages ship)
#   cross/sysroot.sh root DIR PACKAGE...
#                                 a bookworm arm64 system with those packages
#                                 (their closure, unpacked) in DIR, as a
#                                 Raspberry Pi OS bookworm board has it: the
#                                 packages' install test runs there
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
# Files:
#   cross/arm64.lock                     the reviewed versions (in git)
#   $CROSS/resolved.lock                 what Debian serves now, same format
#   $SYSROOT/.whisker-packages           what the sysroot was unpacked from
#   $SYSROOT/.whisker-shlibs             the packages' shlibs files, in unpacking
#                                        order (Debian packages of arm64 builds
#                                        take their Depends from them)
#
# Environment:
#   WHISKER_DEPS        where fetched files go (default: <repo>/.deps); the
#                       sysroot is $WHISKER_DEPS/cross/arm64/sysroot
#   WHISKER_CACHE       download cache shared between clones
#                       (default: ${XDG_CACHE_HOME:-$HOME/.cache}/whisker)
#   WHISKER_CROSS_LOCK  the lock to compare with (default: cross/arm64.lock)
#   WHISKER_CROSS_REFRESH
#                       seconds after which the package lists are read again
#                       (default 3600; 0: every run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${WHISKER_DEPS:-$ROOT/.deps}"
CACHE="${WHISKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/whisker}"
ARCH=arm64
TRIPLET=aarch64-linux-gnu
CROSS="$DEPS/cross/$ARCH"
SYSROOT="$CROSS/sysroot"
LINKS="$CROSS/lib"             # unversioned .so links the cross linker is pointed at (-L)
DEBS="$CACHE/debs/$ARCH"
LOCK="${WHISKER_CROSS_LOCK:-$ROOT/cross/$ARCH.lock}"
RESOLVED="$CROSS/resolved.lock"
REFRESH="${WHISKER_CROSS_REFRESH:-3600}"
# Bump when the unpacked layout changes, so existing sysroots are rebuilt.
LAYOUT=3

# --- what goes into the sysroot ----------------------------------------------
TOOLCHAIN=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)

MIRROR="http://deb.debian.org/debian"
SECURITY="http://deb.debian.org/debian-security"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
declare -A SOURCES=(
  [bookworm]="deb [arch=$ARCH signed-by=$KEYRING] $MIRROR bookworm main
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [arch=$ARCH signed-by=$KEYRING] $SECURITY bookworm-security main"
  [forky]="deb [arch=$ARCH signed-by=$KEYRING] $MIRROR forky main"
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
warn() { printf '\033[1;33mcross/sysroot: warning:\033[0m %s\n' "$*" >&2; }
die()  { printf 'cross/sysroot: %s\n' "$*" >&2; exit 1; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then echo sudo; else die "installing the cross toolchain needs root (or sudo)"; fi
  fi
}

need_tools() {
  local t
  for t in apt-get apt-cache dpkg-deb sha256sum; do
    command -v "$t" >/dev/null || die "$t not found: this script needs Debian's apt and dpkg"
  done
  [ -f "$KEYRING" ] || die "$KEYRING not found: install it with 'apt-get install debian-archive-keyring'"
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
    -o APT::Architecture="$ARCH" -o APT::Architectures="$ARCH" -o Acquire::Languages=none \
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
    -o Debug::NoLocking=true -o APT::Sandbox::User=root \
    "$@"
}

# apt_index SUITE [force]: creates the suite's private apt state and reads
# its package lists when they are missing, older than $REFRESH seconds, or
# when forced. apt refuses lists whose Release file is not signed by a key
# in $KEYRING.
apt_index() {
  local suite="$1" force="${2:-}" st="$CROSS/apt/$1"
  mkdir -p "$st"/{sources.list.d,preferences.d,lists/partial,cache/archives/partial}
  : > "$st/preferences"
  [ -f "$st/status" ] || : > "$st/status"
  printf '%s\n' "${SOURCES[$suite]}" > "$st/sources.list"
  if [ -z "$force" ] && [ -f "$st/updated" ] && compgen -G "$st/lists/*_Packages*" >/dev/null &&
    [ $(( $(date +%s) - $(stat -c %Y "$st/updated") )) -lt "$REFRESH" ]; then
    return 0
  fi
  note "reading the $suite $ARCH package lists (private apt state in $st)"
  apt_private "$suite" apt-get update -qq >/dev/null || return 1
  touch "$st/updated"
}

# entries FILE: a lock or record without comments.
entries() { grep -v '^#' "$1" | grep -v '^[[:space:]]*$' || true; }

# stamp: identifies what the sysroot was unpacked from.
stamp() { echo "layout $LAYOUT packages $(entries "$RESOLVED" | sha256sum | cut -d' ' -f1)"; }

# current FILE: the stamp file FILE in the sysroot matches the resolution.
current() { [ -f "$RESOLVED" ] && [ -f "$SYSROOT/$1" ] && [ "$(cat "$SYSROOT/$1")" = "$(stamp)" ]; }

# deb_name PACKAGE VERSION ARCH: the file name apt-get download writes.
deb_name() { printf '%s_%s_%s.deb' "$1" "${2//:/%3a}" "$3"; }

# lock_diff LOCK RESOLVED: one line per difference, sorted:
#   changed SUITE PACKAGE LOCK-VERSION RESOLVED-VERSION
#   added   SUITE PACKAGE - RESOLVED-VERSION       (not in the lock)
#   removed SUITE PACKAGE LOCK-VERSION -           (in the lock, not resolved)
lock_diff() {
  awk 'FNR == 1 { f++ } /^#/ || NF < 3 { next }
    f == 1 { lock[$1 " " $2] = $3; next }
    { now[$1 " " $2] = $3 }
    END {
      for (k in now) if (!(k in lock)) print "added", k, "-", now[k]
      else if (lock[k] != now[k]) print "changed", k, lock[k], now[k]
      for (k in lock) if (!(k in now)) print "removed", k, lock[k], "-"
    }' "$1" "$2" | sort -k3,3 -k1,1
}

# show_diff LOCK RESOLVED: the difference, for people, on stderr.
show_diff() {
  lock_diff "$1" "$2" | awk '{
    if ($1 == "changed") printf "      %-9s %-32s %s -> %s\n", $2, $3, $4, $5
    else if ($1 == "added") printf "      %-9s %-32s (not in the lock) -> %s\n", $2, $3, $5
    else printf "      %-9s %-32s %s -> (no longer needed or offered)\n", $2, $3, $4
  }' >&2
}

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

# resolve_into OUT: resolves every suite against its current lists and
# writes OUT (lock format). The lock's package names are resolved to the
# versions the suites offer now; the roots' dependency closure adds what
# newer versions need. Returns 1 when a suite's lists cannot be read.
resolve_into() {
  local out="$1" force="${2:-}" tmp; tmp="$(mktemp -d)"
  local -A seen=() head=()
  local i suite line name
  for h in ${HEADERS[*]}; do head[$h]=1; done
  # Later suites win: resolve them first so earlier ones can skip what
  # they provide (the C runtime comes from forky only).
  for ((i = ${#SUITES[@]} - 1; i >= 0; i--)); do
    suite="${SUITES[$i]}"
    apt_index "$suite" "$force" || { rm -rf "$tmp"; return 1; }
    # The lock's names for this suite that the suite still offers.
    local wanted=() gone=()
    if [ -f "$LOCK" ]; then
      local -A offered=()
      local names=()
      while read -r s name _; do
        [ "$s" = "$suite" ] && [ -z "${head[$name]:-}" ] && names+=("$name")
      done < <(entries "$LOCK")
      if [ ${#names[@]} -gt 0 ]; then
        while read -r name; do offered[$name]=1; done < <(
          apt_private "$suite" apt-cache policy "${names[@]}" 2>/dev/null |
            awk '/^[^ ]+:$/ { p = substr($1, 1, length($1) - 1) } /Candidate:/ && $2 != "(none)" { print p }')
      fi
      for name in "${names[@]}"; do
        if [ -n "${offered[$name]:-}" ]; then wanted+=("$name"); else gone+=("$name"); fi
      done
      unset offered
      [ ${#gone[@]} -eq 0 ] || warn "$suite no longer offers ${gone[*]} (named in ${LOCK#"$ROOT/"}); resolving without"
    fi
    # A simulated install against an empty dpkg status lists the whole
    # closure, one alternative picked per dependency, no recommends.
    local sim
    # shellcheck disable=SC2086
    if ! sim="$(apt_private "$suite" apt-get -s -qq install --no-install-recommends ${RUNTIME[$suite]} "${wanted[@]}" 2>&1)"; then
      warn "$suite cannot install the lock's packages together any more; resolving from ${RUNTIME[$suite]} alone"
      # shellcheck disable=SC2086
      sim="$(apt_private "$suite" apt-get -s -qq install --no-install-recommends ${RUNTIME[$suite]} 2>&1)" ||
        { printf '%s\n' "$sim" >&2; rm -rf "$tmp"; die "$suite cannot install ${RUNTIME[$suite]} (see above)"; }
    fi
    local pkgs=()
    while read -r line; do pkgs+=("$line"); done < <(
      printf '%s\n' "$sim" | awk '$1 == "Inst" { gsub(/[()]/, "", $3); print $2 "=" $3 }')
    local h v
    for h in ${HEADERS[$suite]}; do
      v="$(apt_private "$suite" apt-cache show --no-all-versions "$h" 2>/dev/null | awk '/^Version:/ { print $2; exit }')"
      [ -n "$v" ] || { rm -rf "$tmp"; die "$suite does not offer $h"; }
      pkgs+=("$h=$v")
    done
    local kept=()
    for line in "${pkgs[@]}"; do
      [ -n "${seen[${line%%=*}]:-}" ] && continue
      seen[${line%%=*}]=1
      kept+=("$line")
    done
    # name version arch sha256, from the index the packages were resolved with
    apt_private "$suite" apt-cache show "${kept[@]}" |
      awk -v suite="$suite" '
        /^Package:/ { p = $2 } /^Version:/ { v = $2 } /^Architecture:/ { a = $2 } /^SHA256:/ { s = $2 }
        /^$/ { if (p != "" && !done[p]++) print suite, p, v, a, s; p = "" }
        END { if (p != "" && !done[p]++) print suite, p, v, a, s }' | sort -k2 > "$tmp/$suite"
    [ "$(wc -l < "$tmp/$suite")" -eq "${#kept[@]}" ] || { rm -rf "$tmp"; die "$suite: could not read every resolved package's record"; }
  done
  {
    echo "# $ARCH packages resolved by cross/sysroot.sh on $(date -u +%Y-%m-%dT%H:%MZ), from the lists:"
    for suite in "${SUITES[@]}"; do
      local rel
      for rel in "$CROSS/apt/$suite/lists/"*_InRelease; do
        [ -f "$rel" ] || continue
        printf '#   %s %s\n' "$(awk '/^Suite:/ { print $2; exit }' "$rel")" "$(awk -F': ' '/^Date:/ { print $2; exit }' "$rel")"
      done
    done
    echo "# suite package version architecture sha256"
    for suite in "${SUITES[@]}"; do cat "$tmp/$suite"; done
  } > "$out"
  rm -rf "$tmp"
}

# resolve: what the sysroot is built from now, in $RESOLVED, and how it
# differs from the lock. If Debian cannot be reached, a sysroot built
# before is kept, with a warning.
step_resolve() {
  say "Resolving the $ARCH packages Debian serves now (names from ${LOCK#"$ROOT/"})"
  [ -f "$LOCK" ] || warn "no lock $LOCK: resolving from the root packages alone"
  need_tools
  mkdir -p "$CROSS"
  if ! resolve_into "$RESOLVED.new" "${1:-}"; then
    rm -f "$RESOLVED.new"
    if current .whisker-stamp; then
      warn "cannot read Debian's package lists; keeping the sysroot resolved before ($(sed -n '1s/.* on \([^,]*\),.*/\1/p' "$RESOLVED"))"
      return 0
    fi
    die "cannot read Debian's $ARCH package lists (see above), and no sysroot was built before"
  fi
  mv "$RESOLVED.new" "$RESOLVED"
  note "$(entries "$RESOLVED" | wc -l) packages: $(for s in "${SUITES[@]}"; do printf '%s %s  ' "$s" "$(entries "$RESOLVED" | grep -c "^$s ")"; done)"
  report_diff
}

# report_diff: warns when the resolution differs from the lock.
report_diff() {
  [ -f "$LOCK" ] || return 0
  local n; n="$(lock_diff "$LOCK" "$RESOLVED" | wc -l)"
  if [ "$n" -eq 0 ]; then
    note "same versions as ${LOCK#"$ROOT/"}"
    return 0
  fi
  warn "$n packages differ from ${LOCK#"$ROOT/"} (Debian serves other versions now); building with what it serves:"
  show_diff "$LOCK" "$RESOLVED"
  note "the versions used are recorded in ${RESOLVED#"$ROOT/"} and in each build's record;"
  note "'cross/sysroot.sh lock' pins them (then review the diff of the lock)"
}

# diff: how the packages the sysroot was unpacked from differ from the lock.
step_diff() {
  [ -f "$SYSROOT/.whisker-packages" ] || die "no sysroot yet: run 'cross/sysroot.sh'"
  [ -f "$LOCK" ] || die "no lock $LOCK"
  lock_diff "$LOCK" "$SYSROOT/.whisker-packages"
}

# lock: resolves again from fresh lists and writes the result to the lock.
step_lock() {
  say "Pinning the $ARCH packages Debian serves now -> $LOCK"
  need_tools
  mkdir -p "$CROSS"
  resolve_into "$RESOLVED.new" force || die "cannot read Debian's $ARCH package lists (see above)"
  mv "$RESOLVED.new" "$RESOLVED"
  local old=""
  [ -f "$LOCK" ] && old="$(mktemp)" && cp "$LOCK" "$old"
  {
    echo "# $ARCH packages unpacked into the cross sysroot by cross/sysroot.sh."
    echo "# Written by 'cross/sysroot.sh lock': the versions last reviewed. Builds use what"
    echo "# Debian serves at the time and warn when it differs from this file."
    echo "# suite package version architecture sha256"
    entries "$RESOLVED"
  } > "$LOCK.tmp"
  mv "$LOCK.tmp" "$LOCK"
  if [ -n "$old" ]; then
    note "changes:"; show_diff "$old" "$LOCK"; rm -f "$old"
  fi
  note "wrote $(entries "$LOCK" | wc -l) packages"
}

# download SUITE NAME=VERSION...: apt-get download into $DEBS; apt checks
# each file against the sha256 of the signed index.
download() {
  local suite="$1"; shift
  (cd "$DEBS" && apt_private "$suite" apt-get download -qq "$@" >/dev/null)
}

step_fetch() {
  [ -f "$RESOLVED" ] || step_resolve
  say "Downloading the resolved $ARCH packages -> $DEBS"
  if current .whisker-stamp; then
    note "the sysroot is already unpacked from these versions; nothing to download"
    return
  fi
  mkdir -p "$DEBS"
  local attempt suite pkg ver arch sha n missing f
  for attempt in 1 2; do
    local failed=0
    n=0
    for suite in "${SUITES[@]}"; do
      missing=()
      while read -r s pkg ver arch sha; do
        [ "$s" = "$suite" ] || continue
        n=$((n + 1))
        f="$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
        [ -f "$f" ] && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ] && continue
        rm -f "$f"
        missing+=("$pkg=$ver")
      done < <(entries "$RESOLVED")
      [ ${#missing[@]} -eq 0 ] && continue
      note "$suite: downloading ${#missing[@]} packages"
      apt_index "$suite" || die "cannot read the $suite lists"
      download "$suite" "${missing[@]}" || { failed=1; break; }
    done
    [ "$failed" -eq 0 ] && break
    [ "$attempt" -eq 1 ] || die "downloads failed twice (see above)"
    # The lists were older than what the mirror serves now.
    warn "a resolved version is gone from the mirror; reading the lists again and resolving anew"
    step_resolve force
  done
  entries "$RESOLVED" | while read -r _ pkg ver arch sha; do
    printf '%s  %s\n' "$sha" "$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
  done | sha256sum -c --quiet || die "checksum mismatch in the downloads (see above)"
  note "ok: $n packages, $(du -sh "$DEBS" | cut -f1) in the cache"
}

step_sysroot() {
  [ -f "$RESOLVED" ] || die "nothing resolved yet: run 'cross/sysroot.sh resolve fetch'"
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
    local suite pkg ver arch sha n=0 f ctl="$tmp.control"
    : > "$tmp/.whisker-shlibs"
    while read -r suite pkg ver arch sha; do
      f="$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
      [ -f "$f" ] || die "$f is missing: run 'cross/sysroot.sh fetch'"
      dpkg-deb --fsys-tarfile "$f" |
        tar -x -C "$tmp" --keep-directory-symlink --no-same-owner --exclude='./usr/share/doc/*' \
          --exclude='./usr/share/man/*' --exclude='./usr/share/locale/*' ||
        die "unpacking $pkg $ver failed"
      # Which package provides which library soname, and at what version
      # (what dpkg-shlibdeps reads from installed packages).
      rm -rf "$ctl" && mkdir -p "$ctl"
      dpkg-deb --control "$f" "$ctl" || die "reading the control files of $pkg $ver failed"
      [ ! -f "$ctl/shlibs" ] || grep -v '^#' "$ctl/shlibs" >> "$tmp/.whisker-shlibs" || true
      n=$((n + 1))
    done < <(entries "$RESOLVED")
    rm -rf "$ctl"
    # update-alternatives would make these links when the packages are
    # installed; unpacking skips maintainer scripts.
    local d="$tmp/usr/lib/$TRIPLET"
    [ -e "$d/libblas.so.3" ] || ln -s blas/libblas.so.3 "$d/libblas.so.3"
    [ -e "$d/liblapack.so.3" ] || ln -s lapack/liblapack.so.3 "$d/liblapack.so.3"
    cp "$RESOLVED" "$tmp/.whisker-packages"
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
  local lib="$SYSROOT/usr/lib/$TRIPLET" rel="../sysroot/usr/lib/$TRIPLET" tfl
  tfl="$(cd "$lib" && ls libtensorflow-lite.so.2.* 2>/dev/null | head -n1)"
  [ -n "$tfl" ] || die "libtensorflow-lite.so.2.* is missing from the sysroot"
  ln -s "$rel/$tfl" "$LINKS/libtensorflowlite_c.so"
  local m
  for m in "${OPENCV_RUNTIME[@]}"; do
    local so; so="$(cd "$lib" && ls libopencv_"$m".so.4.6.* 2>/dev/null | head -n1)"
    [ -n "$so" ] || die "libopencv_$m.so.4.6 is missing from the sysroot"
    ln -s "$rel/$so" "$LINKS/libopencv_$m.so"
  done
  note "linker directory: $LINKS"
}

# check: every library the cross build links, and everything those need,
# resolves inside the sysroot.
step_check() {
  say "Checking the sysroot"
  if current .whisker-checked; then
    note "checked since it was unpacked"
  else
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
  fi
  note "C library $(awk '$2 == "libc6" { print $3 " (" $1 ")" }' "$SYSROOT/.whisker-packages"), TensorFlow Lite $(awk '$2 ~ /^libtensorflow-lite2/ { print $3 " (" $1 ")" }' "$SYSROOT/.whisker-packages")"
}

# manifest SUITE...: for each package of those suites in the sysroot, a
# line "package SUITE NAME VERSION SOURCE SOURCE-VERSION DEB" and one line
# "file SUITE NAME PATH" per file or link it holds, read from the cached
# downloads (DEB).
step_manifest() {
  [ $# -gt 0 ] || die "manifest: name the suites (${SUITES[*]})"
  [ -f "$SYSROOT/.whisker-packages" ] || die "no sysroot yet: run 'cross/sysroot.sh'"
  local want=" $* " suite pkg ver arch sha f src srcver
  while read -r suite pkg ver arch sha; do
    [[ "$want" == *" $suite "* ]] || continue
    f="$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
    [ -f "$f" ] || die "$f is missing from the download cache: run 'cross/sysroot.sh fetch'"
    read -r src srcver < <(dpkg-deb -f "$f" Source | tr -d '()')
    printf 'package %s %s %s %s %s %s\n' "$suite" "$pkg" "$ver" "${src:-$pkg}" "${srcver:-$ver}" "$f"
    dpkg-deb -c "$f" | awk -v s="$suite" -v p="$pkg" '$1 !~ /^d/ { sub(/^\.\//, "/", $6); print "file", s, p, $6 }'
  done < <(entries "$SYSROOT/.whisker-packages")
}

# root DIR PACKAGE...: unpacks into DIR the dependency closure of the
# packages in the first suite (bookworm) as apt resolves it now, with its
# own C library: what a bookworm board with those packages installed has.
# Kept while the closure stays the same.
step_root() {
  [ $# -ge 2 ] || die "root: give a directory and the packages"
  local dir="$1" suite="${SUITES[0]}"; shift
  need_tools
  say "A $suite $ARCH root with $* -> $dir"
  apt_index "$suite" || die "cannot read the $suite lists"
  local sim
  sim="$(apt_private "$suite" apt-get -s -qq install --no-install-recommends "$@" 2>&1)" ||
    { printf '%s\n' "$sim" >&2; die "$suite cannot install $* (see above)"; }
  local pkgs=()
  while read -r line; do pkgs+=("$line"); done < <(
    printf '%s\n' "$sim" | awk '$1 == "Inst" { gsub(/[()]/, "", $3); print $2 "=" $3 }')
  local list; list="$(apt_private "$suite" apt-cache show "${pkgs[@]}" |
    awk -v suite="$suite" '
      /^Package:/ { p = $2 } /^Version:/ { v = $2 } /^Architecture:/ { a = $2 } /^SHA256:/ { s = $2 }
      /^$/ { if (p != "" && !done[p]++) print suite, p, v, a, s; p = "" }
      END { if (p != "" && !done[p]++) print suite, p, v, a, s }' | sort -k2)"
  local id; id="layout $LAYOUT root $(printf '%s\n' "$list" | sha256sum | cut -d' ' -f1)"
  if [ -f "$dir/.whisker-root" ] && [ "$(cat "$dir/.whisker-root")" = "$id" ]; then
    note "up to date ($(printf '%s\n' "$list" | wc -l) packages)"
    return
  fi
  mkdir -p "$DEBS"
  local missing=() pkg ver arch sha f
  while read -r _ pkg ver arch sha; do
    f="$DEBS/$(deb_name "$pkg" "$ver" "$arch")"
    [ -f "$f" ] && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha" ] || { rm -f "$f"; missing+=("$pkg=$ver"); }
  done <<<"$list"
  if [ ${#missing[@]} -gt 0 ]; then
    note "downloading ${#missing[@]} packages"
    download "$suite" "${missing[@]}" || die "downloading the $suite packages failed (see above)"
  fi
  local tmp="$dir.tmp" n=0
  rm -rf "$tmp"
  mkdir -p "$tmp"
  while read -r _ pkg ver arch sha; do
    dpkg-deb --fsys-tarfile "$DEBS/$(deb_name "$pkg" "$ver" "$arch")" |
      tar -x -C "$tmp" --keep-directory-symlink --no-same-owner --exclude='./usr/share/doc/*' \
        --exclude='./usr/share/man/*' --exclude='./usr/share/locale/*' || die "unpacking $pkg $ver failed"
    n=$((n + 1))
  done <<<"$list"
  local d="$tmp/usr/lib/$TRIPLET"
  [ ! -e "$d/blas/libblas.so.3" ] || ln -sf blas/libblas.so.3 "$d/libblas.so.3"
  [ ! -e "$d/lapack/liblapack.so.3" ] || ln -sf lapack/liblapack.so.3 "$d/liblapack.so.3"
  printf '%s\n' "$list" > "$tmp/.whisker-packages"
  echo "$id" > "$tmp/.whisker-root"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  note "unpacked $n packages ($(du -sh "$dir" | cut -f1))"
}

main() {
  if [ "${1:-}" = manifest ]; then shift; step_manifest "$@"; return; fi
  if [ "${1:-}" = root ]; then shift; mkdir -p "$CROSS" "$CACHE"; step_root "$@"; return; fi
  local steps=("$@")
  [ ${#steps[@]} -eq 0 ] && steps=(toolchain resolve fetch sysroot check)
  mkdir -p "$CROSS" "$CACHE"
  for s in "${steps[@]}"; do
    case "$s" in
      toolchain|resolve|lock|fetch|sysroot|check|diff) "step_$s" ;;
      *) die "unknown step '$s' (steps: toolchain resolve fetch sysroot check lock diff)" ;;
    esac
  done
}

main "$@"
