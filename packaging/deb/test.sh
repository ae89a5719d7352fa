#!/usr/bin/env bash
# Installs the Debian packages as a user would and checks what they promise
# (`make package-test`).
#
# amd64, in a throwaway Debian bookworm root (debootstrap, then chroot):
#   apt-get install ./whisker_<version>_amd64.deb; the demo on the installed
#   backbone; the service's own command, as the whisker user with the
#   installed configuration, publishing sightings to an MQTT client outside
#   the root; an upgrade to a newer package (configuration kept, service
#   restarted); remove (service stopped, configuration and state kept);
#   purge (both deleted). systemd does not run in a chroot: a stand-in
#   systemctl records what the maintainer scripts ask of it.
# arm64, unpacked into a bookworm arm64 root holding the package's Depends as
#   apt resolves them (and bookworm's own C library), its binary run under
#   qemu-aarch64-static: version, build record, configuration check, and an
#   embedding compared with amd64's.
# Both: the update bundles of the packaged binaries carry the packages'
#   version and build record.
#
#   packaging/deb/test.sh --version V --upgrade-version U --dist DIR --upgrade DEB \
#       --demo-video FILE --whisker BIN --bundle-pub KEY.pub [--parts "amd64 arm64 bundles"]
#
# The bookworm root with the package's dependencies installed is made once
# and kept in $WHISKER_DEPS/pkgtest (a new one when the Depends change);
# each run works on a copy in /var/tmp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEPS="${WHISKER_DEPS:-$ROOT/.deps}"
MIRROR="http://deb.debian.org/debian"
SECURITY="http://deb.debian.org/debian-security"

say()  { printf '\033[1m==> %s\033[0m\n' "$*"; }
ok()   { printf '    ok: %s\n' "$*"; }
die()  { printf 'packaging/deb/test: FAIL: %s\n' "$*" >&2; exit 1; }

parts="amd64 arm64 bundles" version="" upgrade_version="" dist="" upgrade="" video="" whisker="" pub=""
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --upgrade-version) upgrade_version="$2"; shift 2 ;;
    --dist) dist="$2"; shift 2 ;;
    --upgrade) upgrade="$2"; shift 2 ;;
    --demo-video) video="$2"; shift 2 ;;
    --whisker) whisker="$2"; shift 2 ;;
    --bundle-pub) pub="$2"; shift 2 ;;
    --parts) parts="$2"; shift 2 ;;
    *) die "unknown argument '$1' (see the head of $0)" ;;
  esac
done
[ -n "$version" ] && [ -n "$upgrade_version" ] && [ -n "$dist" ] && [ -n "$upgrade" ] &&
  [ -n "$video" ] && [ -n "$whisker" ] && [ -n "$pub" ] || die "missing arguments (see the head of $0)"
[ "$(id -u)" -eq 0 ] || die "the test needs root (debootstrap, chroot, mounting /proc)"
debv() { printf '%s' "${1/-/\~}"; }
amd64="$dist/whisker_$(debv "$version")_amd64.deb"
arm64="$dist/whisker_$(debv "$version")_arm64.deb"
part() { [[ " $parts " == *" $1 "* ]]; }
need=("$video" "$whisker")
! part amd64 || need+=("$amd64" "$upgrade")
! part arm64 || need+=("$arm64")
! part bundles || need+=("$pub")
for f in "${need[@]}"; do [ -f "$f" ] || die "missing $f"; done
for t in debootstrap:debootstrap mosquitto_sub:mosquitto-clients qemu-aarch64-static:qemu-user-static python3:python3; do
  command -v "${t%%:*}" >/dev/null && continue
  say "installing ${t#*:}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${t#*:}" >/dev/null ||
    die "could not install ${t#*:} (apt-get install ${t#*:})"
done

started=$(date +%s)
work="$(mktemp -d /var/tmp/whisker-pkgtest.XXXXXX)"
R="$work/root"
agent=""
mounts=()
cleanup() {
  [ -z "$agent" ] || kill "$agent" 2>/dev/null || true
  local m
  for m in ${mounts[@]+"${mounts[@]}"}; do ! mountpoint -q "$m" || umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT
mount_proc() { mount -t proc proc "$1/proc"; mounts+=("$1/proc"); }
# has ARGS: grep ARGS quietly, reading all of its input (a pipeline's
# writer must not die of SIGPIPE under pipefail).
has() { grep "$@" >/dev/null; }

PATH_IN="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# inroot ROOT CMD...: runs a command in a root as root, with a clean environment.
inroot() { local r="$1"; shift; chroot "$r" /usr/bin/env -i PATH="$PATH_IN" LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }
depends_names() { dpkg-deb -f "$1" Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/[[:space:]]//g' | grep -v '^$'; }

test_amd64() {
# --- amd64: the root --------------------------------------------------------
names=($(depends_names "$amd64"))
key="$(printf 'bookworm minbase 1\n%s\n' "$(dpkg-deb -f "$amd64" Depends)" | sha256sum | cut -c1-16)"
base="$DEPS/pkgtest/bookworm-amd64-$key"
if [ ! -f "$base/.whisker-ready" ]; then
  say "A Debian bookworm root with the package's dependencies (once; kept in $base)"
  rm -rf "$DEPS"/pkgtest/bookworm-amd64-* "$base.tmp"
  mkdir -p "$DEPS/pkgtest/debootstrap-cache"
  debootstrap --variant=minbase --cache-dir="$DEPS/pkgtest/debootstrap-cache" bookworm "$base.tmp" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
  cat > "$base.tmp/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
EOF
  cp /etc/resolv.conf "$base.tmp/etc/resolv.conf"
  # Packages installed into the root start no services.
  printf '#!/bin/sh\nexit 101\n' > "$base.tmp/usr/sbin/policy-rc.d" && chmod 755 "$base.tmp/usr/sbin/policy-rc.d"
  mount_proc "$base.tmp"
  inroot "$base.tmp" apt-get update -qq || die "apt-get update in the root failed"
  inroot "$base.tmp" apt-get install -y -qq --no-install-recommends "${names[@]}" > "$work/deps.log" 2>&1 ||
    { tail -20 "$work/deps.log"; die "installing the package's dependencies (${names[*]}) in the root failed"; }
  inroot "$base.tmp" apt-get clean
  umount "$base.tmp/proc"
  rm -f "$base.tmp/usr/sbin/policy-rc.d"
  touch "$base.tmp/.whisker-ready"
  mv "$base.tmp" "$base"
  ok "bookworm root with ${#names[@]} dependencies ($(du -sh "$base" | cut -f1))"
fi
say "amd64: a fresh copy of the bookworm root -> $R"
cp -a "$base" "$R"
mount_proc "$R"
mkdir -p "$R/run/systemd/system" "$R/tmp" "$R/usr/local/share/whisker-test"
chmod 1777 "$R/tmp"
# Maintainer scripts act on the unit when /run/systemd/system exists; this
# systemctl records what they ask. An enabled unit counts as running. (apt
# runs dpkg with PATH=/usr/sbin:/usr/bin:/sbin:/bin; the minimal root has
# no systemd package whose file it would replace.)
[ ! -e "$R/usr/bin/systemctl" ] || die "the root has a systemctl of its own"
cat > "$R/usr/bin/systemctl" <<'EOF'
#!/bin/sh
echo "$*" >> /var/log/whisker-test-systemctl.log
wants=/etc/systemd/system/multi-user.target.wants/whisker.service
case " $* " in
  *" --version "*) echo "systemd 252 (252.0)" ;;
  *" is-enabled "*) if [ -L "$wants" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  *" is-active "*) [ -L "$wants" ] ;;
esac
EOF
chmod 755 "$R/usr/bin/systemctl"
calls() { cat "$R/var/log/whisker-test-systemctl.log" 2>/dev/null || true; }
reset_calls() { rm -f "$R/var/log/whisker-test-systemctl.log"; }
cp "$amd64" "$upgrade" "$R/tmp/"
cp "$video" "$R/usr/local/share/whisker-test/pets.avi"
chmod 644 "$R/usr/local/share/whisker-test/pets.avi"

# --- install ------------------------------------------------------------------
say "amd64: apt-get install ./$(basename "$amd64")"
inroot "$R" apt-get install -y "/tmp/$(basename "$amd64")" > "$work/install.log" 2>&1 ||
  { cat "$work/install.log"; die "apt-get install failed"; }
grep -q "set the camera and the broker in /etc/whisker/whisker.yaml" "$work/install.log" ||
  { cat "$work/install.log"; die "the installation did not say what to set up"; }
ok "installed; it said: $(grep -o 'whisker: set the camera.*' "$work/install.log")"
[ "$(inroot "$R" dpkg-query -W -f='${Status} ${Version}' whisker)" = "install ok installed $(debv "$version")" ] ||
  die "dpkg says: $(inroot "$R" dpkg-query -W -f='${Status} ${Version}' whisker)"
uid="$(inroot "$R" id -u whisker)" && [ "$uid" -lt 1000 ] || die "no system user whisker (uid '$uid')"
inroot "$R" id -nG whisker | tr ' ' '\n' | has -x video || die "whisker is not in the group video"
ok "system user whisker (uid $uid, groups: $(inroot "$R" id -nG whisker))"
# Owners by the root's own user and group names.
mode() { inroot "$R" stat -c '%a %U %G' "$1"; }
perm="$(mode /etc/whisker/whisker.yaml)"
[ "$perm" = "640 root whisker" ] || die "/etc/whisker/whisker.yaml is $perm, want 640 root whisker"
ok "/etc/whisker/whisker.yaml: $perm (a conffile: $(inroot "$R" dpkg-query -W -f='${Conffiles}' whisker | awk 'NF { print $1 }'))"
[ "$(mode /var/lib/whisker)" = "750 whisker whisker" ] || die "/var/lib/whisker is $(mode /var/lib/whisker)"
ok "/var/lib/whisker: 750 whisker whisker"
[ -f "$R/usr/lib/systemd/system/whisker.service" ] || die "no unit"
[ ! -e "$R/etc/systemd/system/multi-user.target.wants/whisker.service" ] || die "the unit was enabled on installation"
! calls | has -E '(start|restart) whisker' || die "the service was started on installation: $(calls)"
ok "unit installed, not enabled or started (systemctl was asked: $(calls | paste -sd';'))"
inroot "$R" whisker version | has "^whisker $version (TensorFlow Lite 2.2.0)" || die "whisker version: $(inroot "$R" whisker version)"
inroot "$R" whisker version --record | cmp -s - "$R/usr/lib/whisker/build-record.json" ||
  die "whisker version --record differs from /usr/lib/whisker/build-record.json"
[ "$(dpkg-deb -f "$amd64" Whisker-Build-Record | cut -d' ' -f1)" = "sha256:$(sha256sum < "$R/usr/lib/whisker/build-record.json" | cut -d' ' -f1)" ] ||
  die "the control field Whisker-Build-Record does not match the record"
ok "$(inroot "$R" whisker version); the binary, the file and the control field carry one build record"
inroot "$R" whisker config check /etc/whisker/whisker.yaml > /dev/null || die "the installed configuration does not check"
ok "whisker config check /etc/whisker/whisker.yaml"

# --- the demo -----------------------------------------------------------------
say "amd64: the installed whisker runs the demo on the installed backbone"
cat > "$R/root/demo.yaml" <<'EOF'
device: demo
backbone: /usr/share/whisker/models/backbone.manifest.json
camera:
  source: /usr/local/share/whisker-test/pets.avi
  loop: true
  max_fps: 2
  motion:
    idle_interval: 2s
EOF
timeout 600 chroot "$R" /usr/bin/env -i PATH="$PATH_IN" HOME=/root whisker demo --config /root/demo.yaml --watch 20s \
  > "$work/demo.txt" 2>&1 || { cat "$work/demo.txt"; die "whisker demo failed"; }
sed 's/^/    | /' "$work/demo.txt" | tail -8
awk '/sightings named as a person would/ { n = $3; good = $1 } END { exit !(n >= 3 && good * 10 >= n * 9) }' "$work/demo.txt" ||
  die "the demo named fewer than 3 sightings, or under 90% of them as a person would"
ok "demo: $(grep 'sightings named as a person would' "$work/demo.txt")"

# --- the service's command, as the service runs it ----------------------------
say "amd64: the service's command as the whisker user, with the installed configuration"
ports=($(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])'))
# What a user edits (sudoedit /etc/whisker/whisker.yaml).
sed -i -e 's|^# device: porch.*|device: pkgtest|' \
  -e 's|^  source: /dev/video0$|  source: /usr/local/share/whisker-test/pets.avi\n  loop: true|' \
  -e "s|^  embedded_listen: 127.0.0.1:1883$|  embedded_listen: 127.0.0.1:${ports[0]}|" \
  -e "s|^  listen: 127.0.0.1:9808$|  listen: 127.0.0.1:${ports[1]}|" "$R/etc/whisker/whisker.yaml"
grep -q '^device: pkgtest' "$R/etc/whisker/whisker.yaml" && grep -q "127.0.0.1:${ports[0]}" "$R/etc/whisker/whisker.yaml" &&
  grep -q 'pets.avi' "$R/etc/whisker/whisker.yaml" || die "could not edit the installed configuration as a user would"
exec_start="$(sed -n 's/^ExecStart=//p' "$R/usr/lib/systemd/system/whisker.service")"
chroot --userspec=whisker:whisker --groups=video "$R" /usr/bin/env -i PATH="$PATH_IN" STATE_DIRECTORY=/var/lib/whisker \
  $exec_start > "$work/agent.log" 2>&1 &
agent=$!
deadline=$(( $(date +%s) + 240 ))
sighting=""
while [ -z "$sighting" ] && [ "$(date +%s)" -lt "$deadline" ]; do
  kill -0 "$agent" 2>/dev/null || { cat "$work/agent.log"; die "the agent exited"; }
  sighting="$(mosquitto_sub -h 127.0.0.1 -p "${ports[0]}" -t whisker/pkgtest/sighting -C 1 -W 30 2>/dev/null || true)"
  [ -n "$sighting" ] || sleep 2
done
[ -n "$sighting" ] || { tail -20 "$work/agent.log"; die "no sighting on whisker/pkgtest/sighting within 4 minutes"; }
printf '%s' "$sighting" | python3 -c 'import json, sys; s = json.load(sys.stdin); assert s["label"] and s["id"], s' ||
  die "the sighting is not what docs/mqtt.md says: $sighting"
ok "$exec_start (user whisker): a sighting on whisker/pkgtest/sighting: $(printf '%s' "$sighting" | cut -c1-110)..."
kill -TERM "$agent"
for _ in $(seq 40); do kill -0 "$agent" 2>/dev/null || break; sleep 0.5; done
! kill -0 "$agent" 2>/dev/null || die "the agent did not stop within 20 s of SIGTERM"
wait "$agent" || true
agent=""
state="$(cd "$R/var/lib/whisker" && find . -mindepth 1 | sort | paste -sd' ')"
[ -n "$state" ] || die "the agent left no state in /var/lib/whisker"
[ -z "$(inroot "$R" find /var/lib/whisker ! -user whisker)" ] || die "files in /var/lib/whisker not owned by whisker"
ok "stopped on SIGTERM; its state: /var/lib/whisker/{$(printf '%s' "$state" | sed 's|\./||g' | tr ' ' ',')}"

# --- upgrade --------------------------------------------------------------------
say "amd64: upgrade to $(basename "$upgrade"), with the service enabled"
# What systemctl enable does (systemd does not run here).
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
ln -s /usr/lib/systemd/system/whisker.service "$R/etc/systemd/system/multi-user.target.wants/whisker.service"
reset_calls
inroot "$R" apt-get install -y "/tmp/$(basename "$upgrade")" > "$work/upgrade.log" 2>&1 ||
  { cat "$work/upgrade.log"; die "the upgrade failed"; }
[ "$(inroot "$R" dpkg-query -W -f='${Status} ${Version}' whisker)" = "install ok installed $(debv "$upgrade_version")" ] ||
  die "after the upgrade dpkg says: $(inroot "$R" dpkg-query -W -f='${Status} ${Version}' whisker)"
inroot "$R" whisker version | has "^whisker $upgrade_version " || die "after the upgrade: $(inroot "$R" whisker version)"
grep -q '^device: pkgtest' "$R/etc/whisker/whisker.yaml" && grep -q "127.0.0.1:${ports[0]}" "$R/etc/whisker/whisker.yaml" ||
  die "the upgrade did not keep the edited configuration"
[ -z "$(ls "$R"/etc/whisker/*.dpkg-* 2>/dev/null)" ] || die "the upgrade left $(ls "$R"/etc/whisker/*.dpkg-*)"
[ "$(mode /etc/whisker/whisker.yaml)" = "640 root whisker" ] || die "the upgrade changed the configuration's mode"
calls | has 'restart whisker.service' || die "the upgrade did not restart the service (systemctl was asked: $(calls | paste -sd';'))"
[ -L "$R/etc/systemd/system/multi-user.target.wants/whisker.service" ] || die "the upgrade disabled the service"
ok "$(inroot "$R" whisker version); configuration kept (640 root whisker, edits in place); service restarted and still enabled (systemctl: $(calls | paste -sd';'))"

# --- remove, purge ---------------------------------------------------------------
say "amd64: apt-get remove whisker"
reset_calls
inroot "$R" apt-get remove -y whisker > "$work/remove.log" 2>&1 || { cat "$work/remove.log"; die "remove failed"; }
calls | has 'stop whisker.service' || die "remove did not stop the service (systemctl: $(calls | paste -sd';'))"
[ ! -e "$R/usr/bin/whisker" ] && [ ! -e "$R/usr/lib/whisker" ] && [ ! -e "$R/usr/share/whisker" ] || die "remove left the program"
grep -q '^device: pkgtest' "$R/etc/whisker/whisker.yaml" || die "remove did not keep the configuration"
[ -n "$(ls -A "$R/var/lib/whisker")" ] || die "remove did not keep the state"
[ "$(inroot "$R" dpkg-query -W -f='${Status}' whisker)" = "deinstall ok config-files" ] || die "after remove: $(inroot "$R" dpkg-query -W -f='${Status}' whisker)"
ok "service stopped (systemctl: $(calls | paste -sd';')); program gone; configuration and /var/lib/whisker kept"

say "amd64: apt-get purge whisker"
inroot "$R" apt-get purge -y whisker > "$work/purge.log" 2>&1 || { cat "$work/purge.log"; die "purge failed"; }
[ ! -e "$R/etc/whisker" ] || die "purge left /etc/whisker: $(ls -A "$R/etc/whisker")"
[ ! -e "$R/var/lib/whisker" ] || die "purge left /var/lib/whisker"
[ -z "$(inroot "$R" dpkg-statoverride --list /etc/whisker/whisker.yaml || true)" ] || die "purge left the stat override"
[ ! -e "$R/etc/systemd/system/multi-user.target.wants/whisker.service" ] || die "purge left the unit enabled"
! inroot "$R" dpkg-query -W -f='${Status}' whisker 2>/dev/null | has installed || die "dpkg still knows whisker after purge"
ok "configuration, state, stat override and unit links gone; the user whisker stays (Debian's practice)"

}

test_arm64() {
# --- arm64 ------------------------------------------------------------------
say "arm64: a bookworm arm64 root with the package's Depends, as apt resolves them"
armroot="$DEPS/cross/arm64/bookworm-root"
WHISKER_DEPS="$DEPS" "$ROOT/cross/sysroot.sh" root "$armroot" $(depends_names "$arm64")
# Every versioned dependency is met by what bookworm serves.
while read -r dep; do
  name="${dep%% *}" op="$(printf '%s' "$dep" | sed -n 's/.*(\([<>=]*\) .*/\1/p')" want="$(printf '%s' "$dep" | sed -n 's/.*(.* \(.*\))/\1/p')"
  have="$(awk -v p="$name" '$2 == p { print $3 }' "$armroot/.whisker-packages")"
  [ -n "$have" ] || die "$name is not in the arm64 root"
  [ -z "$op" ] || dpkg --compare-versions "$have" "$(printf '%s' "$op" | sed 's/>=/ge/; s/<=/le/; s/^=$/eq/; s/>>/gt/; s/<</lt/')" "$want" ||
    die "bookworm has $name $have, the package wants $op $want"
done < <(dpkg-deb -f "$arm64" Depends | tr ',' '\n' | sed 's/^ *//; s/ *|.*//')
rootlibc="$(awk '$2 == "libc6" { print $3 }' "$armroot/.whisker-packages")"
ok "every Depends met; the root's C library is bookworm's libc6 $rootlibc"
A="$work/arm64"
cp -al "$armroot" "$A"
dpkg-deb -x "$arm64" "$A"
mkdir -p "$A/tmp"
cp "$DEPS/testdata/chelsea.png" "$A/tmp/"
qemu() { qemu-aarch64-static -L "$A" "$A/usr/bin/whisker" "$@"; }
qemu version | has "^whisker $version (TensorFlow Lite 2.14" || die "arm64 whisker version: $(qemu version 2>&1)"
ok "under qemu: $(qemu version)"
qemu version --record | cmp -s - "$A/usr/lib/whisker/build-record.json" || die "arm64: the binary's build record differs from the package's"
ok "arm64 build record: $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(len(r["packages"]), "packages,", len(r["lock"]["differs"]), "differ from", r["lock"]["file"])' "$A/usr/lib/whisker/build-record.json")"
qemu config check /etc/whisker/whisker.yaml >/dev/null || die "arm64: the installed configuration does not check"
"$whisker" embed --backbone "$DEPS/models/backbone.manifest.json" --threads 2 "$A/tmp/chelsea.png" > "$A/tmp/amd64.json"
qemu embed --backbone /usr/share/whisker/models/backbone.manifest.json --threads 2 --compare /tmp/amd64.json \
  --tolerance 1e-4 /tmp/chelsea.png > "$work/embed.txt" 2>&1 || { cat "$work/embed.txt"; die "arm64 embedding"; }
ok "installed backbone, TensorFlow Lite 2.14 and OpenCV 4.6 under qemu: $(grep -o 'max |difference|.*' "$work/embed.txt")"
# What the shipped runtime is for: TensorFlow Lite 2.14 needs a newer C
# library than the root's.
needs="$(readelf -V "$A"/usr/lib/whisker/libtensorflow-lite.so.2.* | grep -o 'GLIBC_2\.[0-9]*' | sort -uV | tail -n1)"
dpkg --compare-versions "${needs#GLIBC_}" gt "${rootlibc%%-*}" ||
  die "TensorFlow Lite needs only $needs: bookworm's C library would do, and the shipped runtime is not needed"
ok "TensorFlow Lite 2.14 needs $needs, the root has glibc ${rootlibc%%-*}: it runs on the package's own runtime"
}

test_bundles() {
# --- bundles ----------------------------------------------------------------
say "the update bundles carry the packages' version and build record"
for a in amd64 arm64; do
  wsk="$dist/whisker-$version-linux-$a.wsk"
  [ -f "$wsk" ] || die "missing $wsk (make bundle)"
  "$whisker" bundle verify "$wsk" --pub "$pub" | sed 1d > "$work/manifest-$a.json" || die "$wsk does not verify"
  deb="$dist/whisker_$(debv "$version")_$a.deb"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/whisker/build-record.json > "$work/record-$a.json"
  python3 - "$work/manifest-$a.json" "$work/record-$a.json" "$version" "$(dpkg-deb -f "$deb" Version)" "$a" <<'EOF' || die "$wsk and $deb disagree"
import json, sys
m = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
version, debversion, arch = sys.argv[3:]
assert m["version"] == version == r["version"], (m["version"], r["version"])
assert debversion == version.replace("-", "~", 1), debversion
assert m["target"] == {"os": "linux", "arch": arch}, m["target"]
assert m["build_record"] == r, "build records differ"
EOF
  ok "$(basename "$wsk"): version $version, target linux/$a, the build record of $(basename "$deb")"
done

}

for p in $parts; do
  case "$p" in amd64|arm64|bundles) "test_$p" ;; *) die "unknown part '$p' (amd64 arm64 bundles)" ;; esac
done
say "package-test passed ($parts) in $(( $(date +%s) - started )) s"
