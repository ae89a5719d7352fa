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
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

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

##@ Setup
.PHONY: deps
deps: ## Install everything: Debian packages, Go modules, TFLite library, models, test data, demo video
	@scripts/deps.sh
	@$(MAKE) --no-print-directory backbone backbone-detect demo-video

.PHONY: check-deps
check-deps:
	@test -f $(TFLITE_LIB) || { echo "missing $(TFLITE_LIB): run 'make deps' (or set TFLITE_DIR to a TensorFlow Lite C library)"; exit 1; }
	@pkg-config --exists opencv4 || { echo "missing OpenCV 4 development files: run 'make deps' (installs libopencv-dev)"; exit 1; }

##@ Build
.PHONY: build
build: check-deps ## Build bin/whisker
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_B) -o $(WHISKER) ./agent/cmd/whisker

.PHONY: backbone
backbone: build ## Cut the default backbone (MobileNetV2 at Conv_1/Relu6, avg-pooled, 1280-d)
	@if [ -f $(BACKBONE) ] && $(WHISKER) model check $(MODELS)/backbone.manifest.json >/dev/null 2>&1; then \
	  echo "==> default backbone: up to date ($(BACKBONE))"; \
	else \
	  echo "==> default backbone: cutting the detector at FeatureExtractor/MobilenetV2/Conv_1/Relu6"; \
	  $(WHISKER) model cut $(MODELS)/ssd_mobilenetv2_oidv4_fp16.tflite \
	    --tensor FeatureExtractor/MobilenetV2/Conv_1/Relu6 --pool avg --range=-1,1 -o $(BACKBONE); \
	fi

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
test: deps ## Set up, then run all tests (real TFLite, OpenCV and mosquitto) with -race
	$(GO) test -tags '$(GOTAGS)' -race -count=1 -timeout 20m $(PKGS)

.PHONY: test-short
test-short: check-deps ## Run the tests without re-checking dependencies
	$(GO) test -tags '$(GOTAGS)' -race -count=1 -timeout 20m $(PKGS)

.PHONY: vet
vet: check-deps ## go vet
	$(GO) vet -tags '$(GOTAGS)' $(PKGS)

.PHONY: bench
bench: deps ## Go benchmarks of the backbone, head and store
	$(GO) test -tags '$(GOTAGS)' -run '^$$' -bench . -benchmem $(PKGS)

.PHONY: fuzz
fuzz: deps ## Fuzz the decoders of outside input, 30 s each
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "==> $$t $$f"; $(GO) test -tags '$(GOTAGS)' -run '^$$' -fuzz "^$$f$$" -fuzztime 30s $$t || exit 1; \
	  done; done

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

.PHONY: soak
soak: deps ## 10-minute soak of a looping video: open Mats (gocv matprofile) and goroutines must not grow
	$(GO) test -tags '$(GOTAGS) matprofile soak' -race -run '^TestSoak$$' -count=1 -timeout 30m -v ./agent/

##@ Other
.PHONY: clean
clean: ## Remove build outputs (keeps .deps)
	rm -rf $(BIN)

.PHONY: env
env: ## Print the build environment, for running go by hand: eval $$(make env)
	@echo "export CGO_CFLAGS='$(CGO_CFLAGS)' CGO_LDFLAGS='$(CGO_LDFLAGS)' WHISKER_DEPS='$(DEPS)' GOFLAGS='-tags=$(GOTAGS)'"

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make TARGET\n"} \
	  /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
