#!/bin/sh
# Prints the package's lintian overrides for an architecture. Each one says
# why the tag is expected; packaging/deb/README.md lists them, and the
# informational tags that remain.
set -eu
arch="$1"
cat <<'END'
# The configuration may hold the MQTT broker's password: root writes it,
# the agent's group reads it (postinst sets 0640 root:whisker).
whisker: non-standard-file-perm 0640 != 0644 [etc/whisker/whisker.yaml]
# Whisker's own field: the sha256 and path of the build record, the same
# record the binary prints (whisker version --record) and its update
# bundle carries.
whisker: unknown-field Whisker-Build-Record
END
case "$arch" in
  arm64) cat <<'END'
# Debian bookworm has no TensorFlow Lite; forky's 2.14 needs glibc 2.38 and
# libstdc++ from GCC 13 or newer. The package ships that library with the C
# and C++ runtime it was built for, unchanged from Debian forky's packages
# (Built-Using), in /usr/lib/whisker, which only /usr/bin/whisker uses: it
# names that directory's loader as its interpreter and searches it first.
# The tags below follow from shipping those unchanged libraries there.
whisker: embedded-library libm [usr/lib/whisker/libm.so.6]
whisker: missing-dependency-on-libc needed by usr/bin/whisker *
whisker: library-not-linked-against-libc [usr/lib/whisker/*]
whisker: shared-library-lacks-prerequisites [usr/lib/whisker/*]
END
    ;;
esac
