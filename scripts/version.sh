#!/bin/sh
# Prints the version to build: X.Y.Z on a release tag vX.Y.Z, else the
# next release from the VERSION file as a pre-release, X.Y.Z-dev.<commit>.
cd "$(dirname "$0")/.." || exit 1
tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null) && { echo "${tag#v}"; exit 0; }
base=$(cat VERSION 2>/dev/null || echo 0.0.0)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo local)
dirty=$(git diff --quiet HEAD 2>/dev/null || echo .dirty)
echo "$base-dev.$commit$dirty"
