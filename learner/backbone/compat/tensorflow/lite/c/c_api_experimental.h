/* Declarations of the experimental TensorFlow Lite C API functions that
 * go-tflite calls, for libtensorflowlite_c builds (such as TensorFlow Lite
 * 2.2) that export the functions but ship no c_api_experimental.h.
 * The Makefile adds this directory to the include path only when the
 * library's own include directory lacks the header. */
#ifndef WHISKER_TFLITE_C_API_EXPERIMENTAL_H_
#define WHISKER_TFLITE_C_API_EXPERIMENTAL_H_

#include <stdbool.h>
#include <stdint.h>

#include "tensorflow/lite/c/c_api.h"
#include "tensorflow/lite/c/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builtin operator codes; values follow the model schema. */
typedef int TfLiteBuiltinOperator;

TFL_CAPI_EXPORT extern TfLiteStatus TfLiteInterpreterResetVariableTensors(
    TfLiteInterpreter* interpreter);

TFL_CAPI_EXPORT extern void TfLiteInterpreterOptionsAddBuiltinOp(
    TfLiteInterpreterOptions* options, TfLiteBuiltinOperator op,
    const TfLiteRegistration* registration, int32_t min_version,
    int32_t max_version);

TFL_CAPI_EXPORT extern void TfLiteInterpreterOptionsAddCustomOp(
    TfLiteInterpreterOptions* options, const char* name,
    const TfLiteRegistration* registration, int32_t min_version,
    int32_t max_version);

/* Not exported by every build; see nnapi_stub.go. */
TFL_CAPI_EXPORT extern void TfLiteInterpreterOptionsSetUseNNAPI(
    TfLiteInterpreterOptions* options, bool enable);

#ifdef __cplusplus
}
#endif

#endif
