//go:build tflite_nonnapi

package backbone

/*
#include <stdbool.h>

typedef struct TfLiteInterpreterOptions TfLiteInterpreterOptions;

// NNAPI is an Android runtime. Builds of libtensorflowlite_c without it do
// not export this setter, which go-tflite references; this no-op fills the
// symbol. The Makefile sets the build tag only for such libraries.
void TfLiteInterpreterOptionsSetUseNNAPI(TfLiteInterpreterOptions* options, bool enable) {
	(void)options;
	(void)enable;
}
*/
import "C"
