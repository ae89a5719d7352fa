#!/usr/bin/env bash
# Builds the Debian package whisker_<version>_<arch>.deb with dpkg-deb from
# a whisker binary that `make package-<arch>` built for it.
#
#   packaging/deb/build.sh --arch amd64 --version V --binary BIN --record REC \
#       --tflite-lib LIB --out DIR
#   packaging/deb/build.sh --arch arm64 --version V --binary BIN --record REC \
#       --sysroot DIR --out DIR
#
# What goes in (README.md, "Install the Debian package"):
#   /usr/bin/whisker                         the agent
#   /usr/lib/whisker/                        TensorFlow Lite, where the distribution lacks it:
#     amd64: libtensorflowlite_c.so          (2.2, from npm node-tflite)
#     arm64: libtensorflow-lite.so.2.14.1    (Debian forky's) with the C and C++ runtime it
#            and its dependencies            was built for, and that runtime's loader, which
#                                            the binary names as its interpreter
#   /usr/lib/whisker/build-record.json       what the binary was built from (= whisker version --record)
#   /usr/share/whisker/models/               both backbones and their manifests
#   /usr/lib/systemd/system/whisker.service  the unit (not enabled or started on first install)
#   /etc/whisker/whisker.yaml                the configuration (conffile, 0640 root:whisker)
# Depends are read from the libraries the binary and the shipped libraries
# need, through the shlibs files of the packages that provide them (this
# machine's for amd64, the sysroot's for arm64), as dpkg-shlibdeps does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/packaging/deb"
DEPS="${WHISKER_DEPS:-$ROOT/.deps}"
MODELS="$DEPS/models"
LIBDIR=/usr/lib/whisker

say()  { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*" >&2; }
die()  { printf 'packaging/deb: %s\n' "$*" >&2; exit 1; }

arch="" version="" binary="" record="" tflite_lib="" sysroot="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --record) record="$2"; shift 2 ;;
    --tflite-lib) tflite_lib="$2"; shift 2 ;;
    --sysroot) sysroot="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) die "unknown argument '$1' (see the head of $0)" ;;
  esac
done
[ -n "$arch" ] && [ -n "$version" ] && [ -n "$binary" ] && [ -n "$record" ] && [ -n "$out" ] ||
  die "--arch, --version, --binary, --record and --out are required"
for t in dpkg-deb readelf gzip md5sum; do
  command -v "$t" >/dev/null || die "$t not found (apt-get install dpkg binutils gzip coreutils)"
done
[ -f "$binary" ] || die "no binary $binary"
[ -f "$record" ] || die "no build record $record"
case "$arch" in
  amd64) [ -f "$tflite_lib" ] || die "amd64 needs --tflite-lib (the TensorFlow Lite C library to ship)" ;;
  arm64) [ -f "$sysroot/.whisker-shlibs" ] || die "arm64 needs --sysroot (a sysroot made by cross/sysroot.sh)"
         TRIPLET=aarch64-linux-gnu LOADER=ld-linux-aarch64.so.1 ;;
  *) die "no packaging for architecture '$arch' (amd64, arm64)" ;;
esac
for f in backbone.tflite backbone.manifest.json backbone-detect.tflite backbone-detect.manifest.json; do
  [ -f "$MODELS/$f" ] || die "missing $MODELS/$f: run 'make deps'"
done

# The Debian version: a semantic pre-release (0.2.0-dev.abc) sorts before
# its release, as 0.2.0~dev.abc does for dpkg.
debversion="${version/-/\~}"
maint="${DEBFULLNAME:-$(git -C "$ROOT" config user.name || true)} <${DEBEMAIL:-$(git -C "$ROOT" config user.email || true)}>"
[ "$maint" != " <>" ] || die "no maintainer: set DEBFULLNAME and DEBEMAIL (or git's user.name and user.email)"
# Files get the commit's time, so that a rebuild of one commit is the same package.
epoch="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)"
export SOURCE_DATE_EPOCH="$epoch"

deb="$out/whisker_${debversion}_${arch}.deb"
stage="$out/stage-$arch"
say "Debian package whisker $debversion for $arch -> $deb"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$out"

# --- files ------------------------------------------------------------------
install -D -m 0755 "$binary" "$stage/usr/bin/whisker"
install -D -m 0644 "$record" "$stage$LIBDIR/build-record.json"
for f in backbone.tflite backbone.manifest.json backbone-detect.tflite backbone-detect.manifest.json; do
  install -D -m 0644 "$MODELS/$f" "$stage/usr/share/whisker/models/$f"
done
unit="$stage/usr/lib/systemd/system/whisker.service"
install -d "$(dirname "$unit")"
sed -e 's|/usr/local/bin/whisker|/usr/bin/whisker|' \
    -e 's|^Documentation=.*|Documentation=man:whisker(1) file:///usr/share/doc/whisker/README.md.gz|' \
    -e 's|^# Whisker pet recognition agent.*|# Whisker pet recognition agent, from the whisker package. Local changes go|' \
    -e 's|^# /etc/systemd/system with ExecStart.*|# in a drop-in: systemctl edit whisker|' \
    "$ROOT/systemd/whisker.service" > "$unit"
chmod 0644 "$unit"
grep -q '^ExecStart=/usr/bin/whisker boot' "$unit" ||
  die "systemd/whisker.service: no ExecStart=/usr/local/bin/whisker boot line to point at /usr/bin/whisker"

# The configuration: the example's, with the packaged paths, and the host
# name as device id (several cameras, one image).
install -d -m 0755 "$stage/etc/whisker"
sed -e 's|/usr/local/share/whisker|/usr/share/whisker|' \
    -e 's|^device: porch$|# device: porch        # default: the host name|' \
    "$ROOT/examples/whisker.yaml" > "$stage/etc/whisker/whisker.yaml"
grep -q '^backbone: /usr/share/whisker/models/backbone-detect.manifest.json$' "$stage/etc/whisker/whisker.yaml" &&
  grep -q '^# device: porch' "$stage/etc/whisker/whisker.yaml" ||
  die "examples/whisker.yaml changed: the package's configuration could not be derived from it (see $0)"
# It may hold the broker's password: root and the agent's group only
# (postinst gives it to the group whisker).
chmod 0640 "$stage/etc/whisker/whisker.yaml"

# The TensorFlow Lite library, and on arm64 the runtime it needs.
ship_lib() { # ship_lib FILE-IN-SYSROOT-OR-HOST NAME: copies a library (and the file a link points at)
  local src="$1" name="$2"
  if [ -L "$src" ]; then
    local target; target="$(readlink "$src")"
    [[ "$target" != */* ]] || die "$src links to $target outside its directory"
    ln -sf "$target" "$stage$LIBDIR/$name"
    ship_lib "$(dirname "$src")/$target" "$target"
  else
    install -m 0644 "$src" "$stage$LIBDIR/$name"
  fi
}
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

built_using=""
copyright_args=()
case "$arch" in
  amd64)
    install -d "$stage$LIBDIR"
    ship_lib "$tflite_lib" libtensorflowlite_c.so
    ;;
  arm64)
    # What Debian forky ships: TensorFlow Lite, and the C and C++ runtime
    # (glibc, libstdc++, libgcc) it was built against. The whole of glibc's
    # libraries go in, so that every library the process loads, the
    # distribution's too, uses one C library: the newer one.
    install -d "$stage$LIBDIR"
    manifest="$(WHISKER_DEPS="$DEPS" "$ROOT/cross/sysroot.sh" manifest forky)"
    declare -A forky_file=()
    # Libraries directly in the library directory (not gconv modules and
    # the like in its subdirectories), and the loader.
    toplib() { [[ "$1" == /usr/lib/$TRIPLET/*.so* && "${1#/usr/lib/$TRIPLET/}" != */* ]]; }
    while read -r _ _ pkg path; do
      if toplib "$path" || [ "$path" = "/usr/lib/$LOADER" ]; then forky_file[${path##*/}]="$pkg"; fi
    done < <(printf '%s\n' "$manifest" | awk '$1 == "file" && $3 !~ /-dev$/')
    libdir="$sysroot/usr/lib/$TRIPLET"
    declare -A shipped=() used_pkg=()
    queue=()
    # All of glibc's shared libraries, and the loader.
    while read -r _ _ pkg path; do
      if toplib "$path"; then queue+=("${path##*/}"); fi
    done < <(printf '%s\n' "$manifest" | awk '$1 == "file" && $3 == "libc6"')
    # What the binary needs from forky, and what those need from forky.
    while read -r so; do [ -z "${forky_file[$so]:-}" ] || queue+=("$so"); done < <(needed "$binary")
    while [ ${#queue[@]} -gt 0 ]; do
      so="${queue[0]}"; queue=("${queue[@]:1}")
      [ -z "${shipped[$so]:-}" ] || continue
      shipped[$so]=1
      used_pkg[${forky_file[$so]}]=1
      [ -e "$libdir/$so" ] || die "$so is not in the sysroot"
      ship_lib "$libdir/$so" "$so"
      case "$so" in *.so|*.so.*) ;; *) continue ;; esac
      while read -r dep; do
        [ -z "${forky_file[$dep]:-}" ] || queue+=("$dep")
      done < <(needed "$libdir/$so" 2>/dev/null || true)
    done
    [ -e "$stage$LIBDIR/$LOADER" ] || die "the loader $LOADER was not shipped"
    [ -n "$(ls "$stage$LIBDIR"/libtensorflow-lite.so.* 2>/dev/null)" ] || die "TensorFlow Lite was not shipped"
    # The binary must name that loader and search that directory first.
    readelf -l "$binary" | grep "interpreter: $LIBDIR/$LOADER" >/dev/null ||
      die "$binary does not use $LIBDIR/$LOADER as its interpreter (build it with make package-arm64)"
    readelf -d "$binary" | grep "(RPATH).*\[$LIBDIR\]" >/dev/null ||
      die "$binary has no RPATH $LIBDIR (build it with make package-arm64)"
    # The source packages of what is shipped, for Built-Using.
    built_using="$(printf '%s\n' "$manifest" | awk '$1 == "package" { print $3, $5, $6 }' |
      while read -r pkg src sv; do [ -z "${used_pkg[$pkg]:-}" ] || echo "$src (= $sv)"; done | sort -u | paste -sd, | sed 's/,/, /g')"
    note "shipped from forky: $(printf '%s\n' "${!used_pkg[@]}" | sort | paste -sd' ')"
    # Each shipped source package's copyright file, from a package of that
    # source that holds it (libstdc++6's documentation is gcc-N-base's).
    declare -A src_done=()
    while read -r pkg src; do
      [ -n "${used_pkg[$pkg]:-}" ] && [ -z "${src_done[$src]:-}" ] || continue
      while read -r cand cdeb; do
        if dpkg-deb -c "$cdeb" | awk '$1 ~ /^-/ { print $6 }' | grep -x "./usr/share/doc/$cand/copyright" >/dev/null; then
          copyright_args+=(--debian "$cand=$cdeb"); src_done[$src]=1; break
        fi
      done < <(printf '%s\n' "$manifest" | awk -v s="$src" -v p="$pkg" '$1 == "package" && $5 == s { print ($3 == p ? 0 : 1), $3, $7 }' | sort | cut -d' ' -f2-)
      [ -n "${src_done[$src]:-}" ] || die "no package of the source $src holds a copyright file"
    done < <(printf '%s\n' "$manifest" | awk '$1 == "package" { print $3, $5 }')
    ;;
esac

# Documentation, the copyright file, the changelog and the man page.
doc="$stage/usr/share/doc/whisker"
install -d "$doc"
for f in "$ROOT/README.md" "$ROOT"/docs/*.md; do
  gzip -9n < "$f" > "$doc/$(basename "$f").gz"
done
"$HERE/copyright.sh" --arch "$arch" --binary "$binary" ${copyright_args[@]+"${copyright_args[@]}"} > "$doc/copyright"
commit="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
{
  printf 'whisker (%s) unstable; urgency=medium\n\n' "$debversion"
  printf '  * Built from commit %s.\n' "$commit"
  printf '  * The whole history: the git log of the Whisker repository.\n\n'
  printf ' -- %s  %s\n' "$maint" "$(date -u -R -d "@$epoch")"
} | gzip -9n > "$doc/changelog.gz"
install -d "$stage/usr/share/man/man1"
sed -e "s|@VERSION@|$version|" -e "s|@DATE@|$(date -u -d "@$epoch" +%Y-%m-%d)|" "$HERE/whisker.1" |
  gzip -9n > "$stage/usr/share/man/man1/whisker.1.gz"
install -d "$stage/usr/share/lintian/overrides"
"$HERE/lintian-overrides.sh" "$arch" > "$stage/usr/share/lintian/overrides/whisker"

# --- Depends, from the libraries needed -------------------------------------
# shlibs lines: "[type:] library soversion dependency"
if [ "$arch" = amd64 ]; then
  shlibs="$(cat /var/lib/dpkg/info/*.shlibs 2>/dev/null | grep -v '^#' || true)"
else
  shlibs="$(grep -v '^#' "$sysroot/.whisker-shlibs" || true)"
fi
[ -n "$shlibs" ] || die "no shlibs files to read library packages from"
declare -A own=() deps=()
for f in "$stage$LIBDIR"/*; do own[${f##*/}]=1; done
objects=("$stage/usr/bin/whisker")
while read -r f; do objects+=("$f"); done < <(find "$stage$LIBDIR" -type f -name '*.so*')
for o in "${objects[@]}"; do
  while read -r so; do
    [ -z "${own[$so]:-}" ] || continue
    # libfoo.so.6 -> "libfoo 6"; libfoo-1.2.so -> "libfoo 1.2"
    if [[ "$so" =~ ^(.*)\.so\.([0-9.]+)$ ]]; then key="${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
    elif [[ "$so" =~ ^(.*)-([0-9.]+)\.so$ ]]; then key="${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
    else die "$so (needed by ${o##*/}): a soname without a version"; fi
    # Lines with a type ("udeb: ...") are for other kinds of package.
    dep="$(printf '%s\n' "$shlibs" | awk -v k="$key" '
      /^[a-z-]+: / { next }
      ($1 " " $2) == k { $1 = ""; $2 = ""; sub(/^  /, ""); d = $0 }
      END { print d }')"
    [ -n "$dep" ] || die "no package provides $so (needed by ${o##*/}) in the shlibs files read"
    deps[$dep]=1
  done < <(needed "$o")
done
depends="$( { echo adduser; printf '%s\n' "${!deps[@]}"; } | sort -u | paste -sd, | sed 's/,/, /g')"

# --- control ----------------------------------------------------------------
installed_size="$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)"
record_sha="$(sha256sum "$record" | cut -d' ' -f1)"
{
  echo "Package: whisker"
  echo "Version: $debversion"
  echo "Architecture: $arch"
  echo "Maintainer: $maint"
  echo "Installed-Size: $installed_size"
  echo "Depends: $depends"
  echo "Suggests: mosquitto-clients, gstreamer1.0-plugins-good"
  [ -z "$built_using" ] || echo "Built-Using: $built_using"
  echo "Section: video"
  echo "Priority: optional"
  echo "Whisker-Build-Record: sha256:$record_sha $LIBDIR/build-record.json"
  cat "$HERE/description"
} > "$stage/DEBIAN/control"
echo /etc/whisker/whisker.yaml > "$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$HERE/$s" "$stage/DEBIAN/$s"; done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"

find "$stage" -exec touch -h -d "@$epoch" {} +
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
note "Depends: $depends"
[ -z "$built_using" ] || note "Built-Using: $built_using"
note "$(du -h "$deb" | cut -f1) $(basename "$deb") (installed: $((installed_size / 1024)) MiB)"
