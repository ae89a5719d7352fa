# Whisker: an edge agent that learns to recognise your pets.
# `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

DEPS       ?= $(CURDIR)/.deps
# A device's own TensorFlow Lite C library: TFLITE_DIR holds include/ and lib/.
TFLITE_DIR ?= $(DEPS)/tflite
TFLITE_LIB := $(TFLITE_DIR)/lib/libtensorflowlite_c.so
BIN        := $(CURDIR)/bin
WHISKER    := $(BIN)/whisker
MODELS     := $(DEPS)/models
BACKBONE   := $(MODELS)/backbone.tflite
DEMO_VIDEO := $(DEPS)/demo/pets.avi
# Evaluated once, so that every step of a build uses one version.
ifeq ($(origin VERSION),undefined)
VERSION    := $(shell scripts/version.sh)
endif

# cgo flags for go-tflite. Libraries that ship no c_api_experimental.h (as
# TensorFlow Lite 2.2 does) get the project's compatibility header; those
# that do not export the NNAPI setter get a no-op for it (tag tflite_nonnapi).
COMPAT_INC := $(if $(wildcard $(TFLITE_DIR)/include/tensorflow/lite/c/c_api_experimental.h),,-I$(CURDIR)/learner/backbone/compat)
TAGS       ?=
TAGS       += $(shell nm -D --defined-only $(TFLITE_LIB) 2>/dev/null | grep -q TfLiteInterpreterOptionsSetUseNNAPI || echo tflite_nonnapi)
GOTAGS     := $(strip $(TAGS))
export CGO_ENABLED := 1
export CGO_CFLAGS  := -I$(TFLITE_DIR)/include $(COMPAT_INC) $(CGO_CFLAGS_EXTRA)
export CGO_LDFLAGS := -L$(TFLITE_DIR)/lib -Wl,-rpath,$(TFLITE_DIR)/lib $(CGO_LDFLAGS_EXTRA)
# Tests find fetched files here.
export WHISKER_DEPS := $(DEPS)

GO        ?= go
GOFLAGS_B := -tags '$(GOTAGS)' -trimpath -ldflags '-X main.version=$(VERSION)'
PKGS      := ./...

# The build record (scripts/build-record.sh): version, commit, target, the
# TensorFlow Lite library and the Debian packages a binary was built with.
# It is embedded in the binary (`whisker version --record`), and the
# binary's Debian package and update bundle carry the same one.
# go_ldflags RECORD: the linker flags that embed it, with the version.
go_ldflags   = -X main.version=$(VERSION) -X main.buildRecord=$$(base64 -w0 $(1))
HOST_ARCH   := $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)
TFLITE_DESC  = libtensorflowlite_c.so sha256:$(firstword $(shell sha256sum $(TFLITE_LIB) 2>/dev/null))$(if $(filter $(DEPS)/tflite,$(TFLITE_DIR)), from npm node-tflite 0.0.2 (TensorFlow Lite 2.2.0), in $(TFLITE_DIR))
# The Debian packages a native build links.
HOST_LINKED  = $(addprefix libopencv-,$(addsuffix 406,$(OPENCV_MODULES))) libstdc++6 libgcc-s1 libc6
host_record  = scripts/build-record.sh --arch $(HOST_ARCH) --version '$(VERSION)' --tflite '$(TFLITE_DESC)' --host-packages '$(HOST_LINKED)'

##@ Setup
.PHONY: deps
deps: ## Install everything: Debian packages, Go modules, TFLite library, models, test data, photographs, reference sets, demo video
	@scripts/deps.sh
	@$(MAKE) --no-print-directory backbone backbone-detect reference demo-video

.PHONY: check-deps
check-deps:
	@test -f $(TFLITE_LIB) || { echo "missing $(TFLITE_LIB): run 'make deps' (or set TFLITE_DIR to a TensorFlow Lite C library)"; exit 1; }
	@pkg-config --exists opencv4 || { echo "missing OpenCV 4 development files: run 'make deps' (installs libopencv-dev)"; exit 1; }

##@ Build
.PHONY: build
build: check-deps ## Build bin/whisker (its build record: bin/whisker.record.json)
	@mkdir -p $(BIN)
	@$(host_record) > $(WHISKER).record.json
	$(GO) build -tags '$(GOTAGS)' -trimpath -ldflags "$(call go_ldflags,$(WHISKER).record.json)" -o $(WHISKER) ./agent/cmd/whisker

.PHONY: backbone
backbone: build ## Cut the default backbone (MobileNetV2 at Conv_1/Relu6, avg-pooled, 1280-d)
	@if [ -f $(BACKBONE) ] && $(WHISKER) model check $(MODELS)/backbone.manifest.json >/dev/null 2>&1; then \
	  echo "==> default backbone: up to date ($(BACKBONE))"; \
	else \
	  echo "==> default backbone: cutting the detector at FeatureExtractor/MobilenetV2/Conv_1/Relu6"; \
	  $(WHISKER) model cut $(MODELS)/ssd_mobilenetv2_oidv4_fp16.tflite \
	    --tensor FeatureExtractor/MobilenetV2/Conv_1/Relu6 --pool avg --range=-1,1 -o $(BACKBONE); \
	fi

.PHONY: reference
# The reference sets depend on the backbone, the pinned photographs and the
# code that embeds them; a copy is kept in the download cache under a key
# of all three, so that a fresh clone does not embed them again.
CACHE     ?= $(or $(WHISKER_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/whisker)
REF_KEY    = $(shell cat $(MODELS)/backbone-detect.manifest.json scripts/deps.sh learner/reference.go learner/bench/reference*.go learner/bench/sightings.go 2>/dev/null | sha256sum | cut -c1-16)
reference: build ## Compute the backbones' reference set of other animals and scenes (models/*.reference)
	@if [ -f $(MODELS)/backbone.reference ] && [ -f $(MODELS)/backbone-detect.reference ] && \
	  [ $(MODELS)/backbone.reference -nt $(MODELS)/backbone-detect.manifest.json ]; then \
	  echo "==> reference set: up to date ($(MODELS)/backbone.reference)"; \
	elif [ -f $(CACHE)/reference/$(REF_KEY)/backbone.reference ] && [ -f $(CACHE)/reference/$(REF_KEY)/backbone-detect.reference ]; then \
	  echo "==> reference set: from the cache ($(CACHE)/reference/$(REF_KEY))"; \
	  cp $(CACHE)/reference/$(REF_KEY)/backbone.reference $(CACHE)/reference/$(REF_KEY)/backbone-detect.reference $(MODELS)/; \
	else \
	  echo "==> reference set: embedding the reference photographs (a few minutes once)"; \
	  $(WHISKER) model reference --deps $(DEPS) && mkdir -p $(CACHE)/reference/$(REF_KEY) && \
	  cp $(MODELS)/backbone.reference $(MODELS)/backbone-detect.reference $(CACHE)/reference/$(REF_KEY)/; fi

.PHONY: demo-video
demo-video: build ## Make the demo video from the test photographs
	@if [ -f $(DEMO_VIDEO) ]; then echo "==> demo video: up to date ($(DEMO_VIDEO))"; else \
	  echo "==> demo video: compositing pet photographs into $(DEMO_VIDEO)"; \
	  $(WHISKER) demo-video --photos $(DEPS)/testdata -o $(DEMO_VIDEO); fi

.PHONY: generate
generate: ## Regenerate the TFLite schema bindings (needs flatc)
	cd firmware/tfl && $(GO) generate

##@ Run
.PHONY: run
run: deps ## Set up, then run the agent on the demo video with the embedded broker
	$(WHISKER) run --config examples/demo.yaml

.PHONY: demo
demo: deps ## Scripted demo: start the agent, label sightings over MQTT, show names appearing
	$(WHISKER) demo --config examples/demo.yaml

##@ Test
.PHONY: test
test: deps vet-tags ## Set up, then vet every build tag and run all tests (real TFLite, OpenCV and mosquitto) with -race
	$(GO) test -tags '$(GOTAGS)' -race -count=1 -timeout 20m $(PKGS)

.PHONY: test-short
test-short: check-deps ## Run the tests without re-checking dependencies
	$(GO) test -tags '$(GOTAGS)' -race -count=1 -timeout 20m $(PKGS)

.PHONY: vet
vet: check-deps ## go vet
	$(GO) vet -tags '$(GOTAGS)' $(PKGS)

.PHONY: vet-tags
vet-tags: check-deps ## go vet under every build tag the tree uses (delegates, soak, cross)
	@GOTAGS='$(GOTAGS)' scripts/vet-tags.sh

.PHONY: screenshots
screenshots: deps ## Drive the web page in chromium and write its screenshots to docs/web/ (about a minute)
	$(GO) test -tags '$(GOTAGS)' -count=1 -run '^TestBrowser$$' ./agent/ -screenshots

.PHONY: bench
bench: deps ## Go benchmarks of the backbone, head and store
	$(GO) test -tags '$(GOTAGS)' -run '^$$' -bench . -benchmem $(PKGS)

.PHONY: bench-learner
bench-learner: deps ## Learner benchmark tables: few-shot accuracy against scikit-learn, training times, label-to-head latency (about 3 min)
	$(WHISKER) bench learner --deps $(DEPS)

.PHONY: bench-openset
bench-openset: deps ## Open-set benchmark: pets named right, strangers and empty scenes unknown, by labels per pet (about 4 min once cached, 12 the first time; QUICK=1 about 1)
	$(WHISKER) bench openset --deps $(DEPS) $(if $(QUICK),--quick) -o openset.md --plot openset.png

.PHONY: fuzz
# Go 1.26's fuzz coordinator can report "context deadline exceeded" when
# -fuzztime runs out while a worker is busy (minimising a new input on a
# loaded machine); that is a failure only when a failing input was written.
fuzz: deps ## Fuzz the decoders of outside input (image sizing included), 30 s each
	@set -o pipefail; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "==> $$t $$f"; \
	    if ! $(GO) test -tags '$(GOTAGS)' -run '^$$' -fuzz "^$$f$$" -fuzztime 30s $$t 2>&1 | tee $$out; then \
	      if tail -n 5 $$out | grep -q 'context deadline exceeded' && ! grep -q 'Failing input written' $$out; then \
	        echo "    no failing input: the fuzz coordinator overran its own deadline; not a failure"; \
	      else exit 1; fi; \
	    fi; \
	  done; done

##@ Install
PREFIX  ?= /usr/local
DESTDIR ?=
SYSCONF := $(DESTDIR)/etc/whisker
UNITDIR := $(DESTDIR)/etc/systemd/system
LIBDIR  := $(PREFIX)/lib/whisker
SHAREDIR:= $(PREFIX)/share/whisker

.PHONY: install
install: deps ## Install binary, TFLite library, backbone, config (kept if present), service unit and user (PREFIX=/usr/local DESTDIR=)
	@mkdir -p $(BIN)
	CGO_LDFLAGS='-L$(TFLITE_DIR)/lib -Wl,-rpath,$(LIBDIR) $(CGO_LDFLAGS_EXTRA)' \
	  $(GO) build $(GOFLAGS_B) -o $(BIN)/whisker-install ./agent/cmd/whisker
	install -D -m 0755 $(BIN)/whisker-install $(DESTDIR)$(PREFIX)/bin/whisker
	install -D -m 0644 $(TFLITE_LIB) $(DESTDIR)$(LIBDIR)/libtensorflowlite_c.so
	install -D -m 0644 $(BACKBONE) $(DESTDIR)$(SHAREDIR)/models/backbone.tflite
	install -D -m 0644 $(MODELS)/backbone.manifest.json $(DESTDIR)$(SHAREDIR)/models/backbone.manifest.json
	install -D -m 0644 $(MODELS)/backbone-detect.tflite $(DESTDIR)$(SHAREDIR)/models/backbone-detect.tflite
	install -D -m 0644 $(MODELS)/backbone-detect.manifest.json $(DESTDIR)$(SHAREDIR)/models/backbone-detect.manifest.json
	install -D -m 0644 $(MODELS)/backbone.reference $(DESTDIR)$(SHAREDIR)/models/backbone.reference
	install -D -m 0644 $(MODELS)/backbone-detect.reference $(DESTDIR)$(SHAREDIR)/models/backbone-detect.reference
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/whisker/README.md
	for d in docs/*.md; do install -D -m 0644 $$d $(DESTDIR)$(PREFIX)/share/doc/whisker/$$(basename $$d); done
	@if [ -f $(SYSCONF)/whisker.yaml ]; then echo "keeping $(SYSCONF)/whisker.yaml"; else \
	  install -d -m 0755 $(SYSCONF) && \
	  sed 's|/usr/local/share/whisker|$(SHAREDIR)|' examples/whisker.yaml > $(SYSCONF)/whisker.yaml && \
	  chmod 0640 $(SYSCONF)/whisker.yaml && echo "installed $(SYSCONF)/whisker.yaml: edit device and camera.source"; fi
	@if [ -n "$$(find $(SYSCONF)/whisker.yaml -perm -o=r 2>/dev/null)" ]; then \
	  echo "warning: $(SYSCONF)/whisker.yaml can be read by every user; it may hold a password: chmod 0640 it"; fi
	install -d -m 0755 $(UNITDIR)
	sed -e 's|/usr/local/bin/whisker|$(PREFIX)/bin/whisker|' -e 's|/usr/local/share/doc|$(PREFIX)/share/doc|' \
	  systemd/whisker.service > $(UNITDIR)/whisker.service
	chmod 0644 $(UNITDIR)/whisker.service
	install -D -m 0644 systemd/whisker.sysusers $(DESTDIR)/usr/lib/sysusers.d/whisker.conf
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null; then systemd-sysusers /usr/lib/sysusers.d/whisker.conf; fi
	@if [ -z "$(DESTDIR)" ] && getent group whisker >/dev/null; then chgrp whisker $(SYSCONF)/whisker.yaml; fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; \
	  echo "installed; start it with: systemctl enable --now whisker"; fi

##@ Cross
# linux/arm64 (Raspberry Pi OS, Jetson): cgo against a sysroot that
# cross/sysroot.sh makes from Debian packages (OpenCV 4.6 from bookworm,
# TensorFlow Lite 2.14 from forky); tests run as arm64 binaries under
# qemu-user. None of this is part of `make test`.
CROSS_DIR      := $(DEPS)/cross/arm64
SYSROOT        := $(CROSS_DIR)/sysroot
CROSS_LIBS     := $(CROSS_DIR)/lib
CROSS_TRIPLET  := aarch64-linux-gnu
CROSS_WHISKER  := $(BIN)/whisker-linux-arm64
CROSS_OUT      := $(BIN)/cross-test
QEMU           := qemu-aarch64-static -L $(SYSROOT)
# The OpenCV modules gocv links (its customenv tag takes the flags from here).
OPENCV_MODULES := core imgproc imgcodecs videoio highgui objdetect features2d flann calib3d dnn photo video
# The host build's detection, applied to the sysroot's library. These are
# expanded when a cross recipe runs, after cross/sysroot.sh has made it.
CROSS_COMPAT    = $(if $(wildcard $(SYSROOT)/usr/include/tensorflow/lite/c/c_api_experimental.h),,-I$(CURDIR)/learner/backbone/compat)
CROSS_TAGS      = $(strip customenv $(CROSS_EXTRA_TAGS) $(shell $(CROSS_TRIPLET)-nm -D --defined-only $(CROSS_LIBS)/libtensorflowlite_c.so 2>/dev/null | grep -q TfLiteInterpreterOptionsSetUseNNAPI || echo tflite_nonnapi))
# The sysroot's C library is newer (2.38+, which TensorFlow Lite 2.14
# needs) than the cross toolchain's (2.36): the binary links against the
# older one, so it also runs on bookworm, and the linker lets the library's
# newer references through.
# cross_env LDFLAGS,CFLAGS: the environment of an arm64 build, with extra
# linker and compiler flags.
cross_env       = GOOS=linux GOARCH=arm64 CGO_ENABLED=1 CC=$(CROSS_TRIPLET)-gcc CXX=$(CROSS_TRIPLET)-g++ \
  CGO_CFLAGS='-I$(SYSROOT)/usr/include $(CROSS_COMPAT) $(2)' \
  CGO_CPPFLAGS='-I$(SYSROOT)/usr/include/opencv4' CGO_CXXFLAGS='--std=c++11 $(2)' \
  CGO_LDFLAGS='-L$(CROSS_LIBS) $(addprefix -lopencv_,$(OPENCV_MODULES)) \
    -Wl,-rpath-link,$(SYSROOT)/usr/lib/$(CROSS_TRIPLET) -Wl,-rpath-link,$(SYSROOT)/usr/lib -Wl,--allow-shlib-undefined $(1)'
CROSS_ENV       = $(call cross_env,)
# The sysroot holds what Debian serves at build time; the lock holds the
# versions last reviewed, and a build that differs warns and records how
# (CROSS_LOCK=FILE compares with another lock).
CROSS_LOCK     ?= $(CURDIR)/cross/arm64.lock
CROSS_TFLITE    = Debian $(shell awk '$$2 ~ /^libtensorflow-lite2/ { print $$1, $$2, $$3; exit }' $(SYSROOT)/.whisker-packages 2>/dev/null)
cross_record    = scripts/build-record.sh --arch arm64 --version '$(VERSION)' --tflite '$(CROSS_TFLITE)' \
  --packages $(SYSROOT)/.whisker-packages --lock $(CROSS_LOCK)
CROSS_PHOTO     := $(DEPS)/testdata/chelsea.png
comma          := ,
space          := $(subst ,, )

.PHONY: cross-sysroot
cross-sysroot: ## Install the arm64 cross toolchain and qemu-user, and make the arm64 sysroot from what Debian serves (cached; differences from cross/arm64.lock are warned about and recorded)
	@WHISKER_CROSS_LOCK='$(CROSS_LOCK)' cross/sysroot.sh >&2 # progress on stderr: the output of cross-env is for eval

.PHONY: cross-arm64
cross-arm64: cross-sysroot ## Build bin/whisker-linux-arm64 against the sysroot (TensorFlow Lite 2.14); its build record beside it
	@mkdir -p $(BIN)
	@$(cross_record) > $(CROSS_WHISKER).record.json
	@echo "==> go build for linux/arm64, tags: $(CROSS_TAGS)"
	$(CROSS_ENV) $(GO) build -tags '$(CROSS_TAGS)' -trimpath -ldflags "$(call go_ldflags,$(CROSS_WHISKER).record.json)" -o $(CROSS_WHISKER) ./agent/cmd/whisker

.PHONY: cross-env
cross-env: cross-sysroot ## Print the arm64 build environment, for running go by hand (docs/devices.md)
	@echo "export $(CROSS_ENV) WHISKER_DEPS='$(DEPS)' GOFLAGS='-tags=$(subst $(space),$(comma),$(CROSS_TAGS))' QEMU='$(QEMU)'"

.PHONY: cross-test
cross-test: cross-arm64 build ## arm64 tests under qemu-user: backbone, learner, camera; x86 vs arm64 embedding; the demo end to end
	@for f in $(MODELS)/backbone.manifest.json $(CROSS_PHOTO) $(DEMO_VIDEO); do \
	  test -f $$f || { echo "missing $$f: run 'make deps'"; exit 1; }; done
	@mkdir -p $(CROSS_OUT)
	@echo "==> arm64 test binaries under qemu-user: learner/backbone (TensorFlow Lite), learner, learner/detect, camera (OpenCV)"
	@# Each emulated Invoke costs seconds, more on a busy machine: learner/bench,
	@# whose open-set test alone embeds 80 photographs (over 30 minutes under
	@# emulation), runs natively in make test; it calls the backbone and OpenCV
	@# through the same packages tested here.
	WHISKER_TEST_EXEC='$(QEMU)' $(CROSS_ENV) $(GO) test -tags '$(CROSS_TAGS)' -count=1 -timeout 60m -exec '$(QEMU)' \
	  ./learner ./learner/backbone/... ./learner/detect ./learner/plots ./camera/...
	@v=$$($(CROSS_TRIPLET)-objdump -T $(CROSS_WHISKER) | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1); \
	  echo "==> $(notdir $(CROSS_WHISKER)) needs $$v at most (bookworm has GLIBC_2.36)"; \
	  test "$$(printf '%s\n' GLIBC_2.36 $$v | sort -V | tail -n1)" = GLIBC_2.36 || \
	  { echo "cross-test: the arm64 binary needs a newer C library than bookworm's"; exit 1; }
	@echo "==> the build record the arm64 binary carries ($(CROSS_WHISKER).record.json)"
	$(QEMU) $(CROSS_WHISKER) version --record | cmp - $(CROSS_WHISKER).record.json
	@awk '/"packages": \[$$/ { p = 1; next } /"differs": \[$$/ { d = 1; next } (p || d) && /^ *\]/ { p = d = 0; next } \
	  p { n++ } d { m++; print "    differs from the lock:", $$0 } \
	  END { printf "    built against %d Debian packages, %d of them differ from the lock\n", n, m }' $(CROSS_WHISKER).record.json
	@echo "==> one photograph embedded on x86 (TensorFlow Lite $$($(WHISKER) version | sed 's/.*Lite \(.*\))/\1/')) and on arm64 under qemu-user"
	$(WHISKER) embed --backbone $(MODELS)/backbone.manifest.json --threads 2 $(CROSS_PHOTO) > $(CROSS_OUT)/embedding-amd64.json
	$(QEMU) $(CROSS_WHISKER) embed --backbone $(MODELS)/backbone.manifest.json --threads 2 \
	  --compare $(CROSS_OUT)/embedding-amd64.json --tolerance 1e-4 $(CROSS_PHOTO)
	@echo "==> end to end under qemu-user: the arm64 whisker runs the demo (video at 2 fps, backbone, training, MQTT)"
	set -o pipefail; $(QEMU) $(CROSS_WHISKER) demo --config examples/demo.yaml --fps 2 --watch 60s | tee $(CROSS_OUT)/demo.txt
	@awk '/sightings named as a person would/ { n = $$3; ok = $$1 } END { exit !(n >= 3 && ok * 10 >= n * 9) }' $(CROSS_OUT)/demo.txt || \
	  { echo "cross-test: the arm64 demo named fewer than 3 sightings, or under 90% of them as a person would ($(CROSS_OUT)/demo.txt)"; exit 1; }
	@echo "==> cross-test passed"

.PHONY: cross-lock-test
cross-lock-test: ## Check that a lock naming versions and packages Debian no longer serves only warns: the sysroot still builds and records what it used
	cross/lock-test.sh

##@ Packages
# Debian packages built with dpkg-deb (packaging/deb), and signed update
# bundles of the same binaries. The packaged binaries find TensorFlow Lite
# in /usr/lib/whisker; the arm64 one also finds there the C runtime that
# TensorFlow Lite 2.14 needs and uses its loader (docs/devices.md).
DIST           ?= $(CURDIR)/dist
PACKAGE_ARCHES ?= amd64 arm64
DEB_VERSION     = $(shell printf '%s' '$(VERSION)' | sed 's/-/~/')
PKG_LIBDIR     := /usr/lib/whisker
PKG_LOADER     := ld-linux-aarch64.so.1
BUNDLE_KEY     ?=
# Packaged binaries are hardened and stripped as Debian's are: position
# independent, full RELRO, fortified C, no symbol table (panics still name
# functions).
PKG_CFLAGS     := -O2 -D_FORTIFY_SOURCE=2
PKG_LDFLAGS    := -Wl,-z,relro -Wl,-z,now
pkg_goflags     = -buildmode=pie -trimpath -ldflags "-s -w $(call go_ldflags,$(1))"

.PHONY: package
package: deps ## Debian packages dist/whisker_<version>_{amd64,arm64}.deb (dpkg-deb), each checked with lintian
	@for a in $(PACKAGE_ARCHES); do $(MAKE) --no-print-directory package-$$a VERSION='$(VERSION)' || exit 1; done
	@packaging/deb/lint.sh $(foreach a,$(PACKAGE_ARCHES),$(DIST)/whisker_$(DEB_VERSION)_$(a).deb)
	@echo "==> packages"; ls -l $(foreach a,$(PACKAGE_ARCHES),$(DIST)/whisker_$(DEB_VERSION)_$(a).deb)

.PHONY: package-amd64
package-amd64: check-deps ## dist/whisker_<version>_amd64.deb, with TensorFlow Lite 2.2 (npm) in /usr/lib/whisker
	@mkdir -p $(DIST)/amd64
	@$(host_record) > $(DIST)/amd64/whisker.record.json
	@echo "==> go build for the amd64 package"
	CGO_CFLAGS='-I$(TFLITE_DIR)/include $(COMPAT_INC) $(PKG_CFLAGS)' CGO_CPPFLAGS='-I/usr/include/opencv4' \
	CGO_CXXFLAGS='--std=c++11 $(PKG_CFLAGS)' \
	CGO_LDFLAGS='-L$(TFLITE_DIR)/lib $(addprefix -lopencv_,$(OPENCV_MODULES)) -Wl,-rpath,$(PKG_LIBDIR) $(PKG_LDFLAGS)' \
	  $(GO) build -tags 'customenv $(GOTAGS)' $(call pkg_goflags,$(DIST)/amd64/whisker.record.json) \
	  -o $(DIST)/amd64/whisker ./agent/cmd/whisker
	packaging/deb/build.sh --arch amd64 --version '$(VERSION)' --binary $(DIST)/amd64/whisker \
	  --record $(DIST)/amd64/whisker.record.json --tflite-lib $(TFLITE_LIB) --out $(DIST)

.PHONY: package-arm64
package-arm64: cross-sysroot ## dist/whisker_<version>_arm64.deb, with TensorFlow Lite 2.14 and its C runtime (Debian forky) in /usr/lib/whisker
	@mkdir -p $(DIST)/arm64
	@$(cross_record) > $(DIST)/arm64/whisker.record.json
	@echo "==> go build for the arm64 package, tags: $(CROSS_TAGS)"
	$(call cross_env,-Wl$(comma)--dynamic-linker=$(PKG_LIBDIR)/$(PKG_LOADER) -Wl$(comma)--disable-new-dtags -Wl$(comma)-rpath$(comma)$(PKG_LIBDIR) $(PKG_LDFLAGS),$(PKG_CFLAGS)) \
	  $(GO) build -tags '$(CROSS_TAGS)' $(call pkg_goflags,$(DIST)/arm64/whisker.record.json) \
	  -o $(DIST)/arm64/whisker ./agent/cmd/whisker
	packaging/deb/build.sh --arch arm64 --version '$(VERSION)' --binary $(DIST)/arm64/whisker \
	  --record $(DIST)/arm64/whisker.record.json --sysroot $(SYSROOT) --out $(DIST)

.PHONY: bundle
bundle: ## Signed update bundles of the binaries `make package` packaged, with their version and build record: dist/whisker-<version>-linux-<arch>.wsk (BUNDLE_KEY=KEY)
	@test -n '$(BUNDLE_KEY)' || { echo "make bundle needs BUNDLE_KEY=<private key> (make one with: bin/whisker keys gen -o fleet)"; exit 1; }
	@for a in $(PACKAGE_ARCHES); do \
	  test -f $(DIST)/whisker_$(DEB_VERSION)_$$a.deb && test -f $(DIST)/$$a/whisker.record.json && \
	    grep -q '"version": "$(VERSION)"' $(DIST)/$$a/whisker.record.json || \
	    { echo "no $$a package of $(VERSION) in $(DIST): run make package first"; exit 1; }; \
	  $(WHISKER) bundle create --version '$(VERSION)' --key '$(BUNDLE_KEY)' --agent $(DIST)/$$a/whisker --target linux/$$a \
	    --build-record $(DIST)/$$a/whisker.record.json -o $(DIST)/whisker-$(VERSION)-linux-$$a.wsk || exit 1; done

.PHONY: package-test
package-test: package ## Install the amd64 package into a throwaway Debian root, run its demo and service, upgrade, remove, purge; the arm64 one in an arm64 root under qemu; bundles match
	$(MAKE) --no-print-directory package-amd64 VERSION='$(PACKAGE_TEST_UPGRADE)' DIST=$(DIST)/upgrade
	@rm -rf $(DIST)/test-key && mkdir -p $(DIST)/test-key && $(WHISKER) keys gen -o $(DIST)/test-key/test >/dev/null
	$(MAKE) --no-print-directory bundle BUNDLE_KEY=$(DIST)/test-key/test.key VERSION='$(VERSION)'
	packaging/deb/test.sh --version '$(VERSION)' --upgrade-version '$(PACKAGE_TEST_UPGRADE)' --dist $(DIST) \
	  --upgrade $(DIST)/upgrade/whisker_$(subst -,~,$(PACKAGE_TEST_UPGRADE))_amd64.deb \
	  --demo-video $(DEMO_VIDEO) --whisker $(WHISKER) --bundle-pub $(DIST)/test-key/test.pub
# The upgrade: the next patch release's pre-release, newer than VERSION for
# dpkg and for bundles alike.
PACKAGE_TEST_UPGRADE = $(shell printf '%s' '$(VERSION)' | awk -F'[.-]' '{ printf "%d.%d.%d-pkgtest", $$1, $$2, $$3 + 1 }')

##@ Camera pipeline
DETECT_BACKBONE := $(MODELS)/backbone-detect.tflite

.PHONY: backbone-detect
backbone-detect: build ## Cut the detector into a backbone that also detects (boxes, scores and feature map from one run)
	@if [ -f $(DETECT_BACKBONE) ] && $(WHISKER) model check $(MODELS)/backbone-detect.manifest.json >/dev/null 2>&1; then \
	  echo "==> detecting backbone: up to date ($(DETECT_BACKBONE))"; \
	else \
	  echo "==> detecting backbone: keeping the detector's outputs and its Conv_1/Relu6 feature map"; \
	  $(WHISKER) model cut $(MODELS)/ssd_mobilenetv2_oidv4_fp16.tflite --detect --labels $(MODELS)/oidv4_labelmap.txt \
	    --tensor FeatureExtractor/MobilenetV2/Conv_1/Relu6 --pool avg --range=-1,1 -o $(DETECT_BACKBONE); \
	fi

.PHONY: bench-pipeline
bench-pipeline: deps ## Camera pipeline table: throughput vs bare Invoke, preprocessing, motion gate CPU, detections
	$(WHISKER) bench pipeline

# How long `make soak` runs (SOAK=1m for a short one).
SOAK ?= 10m

.PHONY: soak
soak: deps ## Soak of a looping video for SOAK (10m): open Mats (gocv matprofile) and goroutines must not grow
	WHISKER_SOAK=$(SOAK) $(GO) test -tags '$(GOTAGS) matprofile soak' -race -run '^TestSoak$$' -count=1 -timeout 3h -v ./agent/pipeline/

##@ Other
.PHONY: clean
clean: ## Remove build outputs (keeps .deps)
	rm -rf $(BIN) $(DIST)

.PHONY: env
env: ## Print the build environment, for running go by hand: eval $$(make env)
	@echo "export CGO_CFLAGS='$(CGO_CFLAGS)' CGO_LDFLAGS='$(CGO_LDFLAGS)' WHISKER_DEPS='$(DEPS)' GOFLAGS='-tags=$(GOTAGS)'"

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make TARGET\n"} \
	  /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
