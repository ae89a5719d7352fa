#!/usr/bin/env bash
# Vets the tree under every build tag its files use, so that no tagged file
# (a delegate, the soak test, the cross build's customenv) rots unseen.
# Each tag is vetted together with the default tags, in the packages that
# have files constrained by it; then all tags at once, over the whole tree.
# The delegates' vendor headers come from learner/backbone/compat/delegates
# (declarations only: nothing is linked). Run by `make vet-tags`, which
# `make test` runs; it needs the environment `make env` prints.
set -euo pipefail
cd "$(dirname "$0")/.."

default_tags=${GOTAGS:-}
export CGO_CFLAGS="${CGO_CFLAGS:-} -I$PWD/learner/backbone/compat/delegates"
# gocv's customenv tag takes OpenCV's flags from the environment.
export CGO_CPPFLAGS="${CGO_CPPFLAGS:-} $(pkg-config --cflags opencv4)"

# Names in //go:build lines that are tags (not operating systems or
# architectures, which a vet on this machine cannot select).
not_tags='^(linux|darwin|windows|freebsd|openbsd|netbsd|android|ios|js|wasip1|amd64|arm64|arm|386|riscv64|ignore|cgo|unix|go1\.[0-9]+)$'
mapfile -t files < <(git ls-files '*.go' | grep -v '^firmware/tfl/')
declare -A pkgs=()
for f in "${files[@]}"; do
  line=$(grep -m1 '^//go:build ' "$f" || true)
  [ -n "$line" ] || continue
  for t in $(printf '%s\n' "${line#//go:build }" | tr -c 'A-Za-z0-9_.\n' ' '); do
    [[ $t =~ $not_tags ]] && continue
    pkgs[$t]+=" ./$(dirname "$f")/"
  done
done
# gocv's own build tag, used by the cross build.
pkgs[customenv]=" ./camera/"

tags=$(printf '%s\n' "${!pkgs[@]}" | sort)
echo "==> build tags in use: $(echo $tags)"
for t in $tags; do
  dirs=$(printf '%s\n' ${pkgs[$t]} | sort -u | tr '\n' ' ')
  echo "==> go vet -tags '$default_tags $t' $dirs"
  go vet -tags "$default_tags $t" $dirs
done
echo "==> go vet -tags '$default_tags $(echo $tags)' ./..."
go vet -tags "$default_tags $(echo $tags)" ./...
echo "==> every build tag vets"
