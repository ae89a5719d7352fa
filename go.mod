module github.com/whiskercam/whisker

go 1.26.0

require (
	github.com/google/flatbuffers v2.0.8+incompatible
	github.com/spf13/cobra v1.10.2
	github.com/tphakala/go-tflite v0.2.2-0.20260514101223-29408e53fff7
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
)
