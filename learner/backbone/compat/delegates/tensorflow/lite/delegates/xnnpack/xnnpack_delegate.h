/* Declarations of TensorFlow Lite's XNNPACK delegate C API used by Whisker,
 * for compile checks only (see ../../../../README.md). */
#ifndef WHISKER_VET_XNNPACK_DELEGATE_H_
#define WHISKER_VET_XNNPACK_DELEGATE_H_

#include <stdint.h>

#include "tensorflow/lite/c/common.h"

typedef struct {
  int32_t num_threads;
  uint32_t flags;
} TfLiteXNNPackDelegateOptions;

TfLiteXNNPackDelegateOptions TfLiteXNNPackDelegateOptionsDefault(void);
TfLiteDelegate* TfLiteXNNPackDelegateCreate(const TfLiteXNNPackDelegateOptions* options);
void TfLiteXNNPackDelegateDelete(TfLiteDelegate* delegate);

#endif
