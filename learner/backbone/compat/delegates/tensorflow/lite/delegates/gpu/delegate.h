/* Declarations of TensorFlow Lite's GPU delegate V2 C API used by Whisker,
 * for compile checks only (see ../../../../README.md). */
#ifndef WHISKER_VET_GPU_DELEGATE_H_
#define WHISKER_VET_GPU_DELEGATE_H_

#include <stdint.h>

#include "tensorflow/lite/c/common.h"

typedef struct {
  int32_t is_precision_loss_allowed;
  int32_t inference_preference;
  int32_t inference_priority1;
  int32_t inference_priority2;
  int32_t inference_priority3;
  int64_t experimental_flags;
  int32_t max_delegated_partitions;
} TfLiteGpuDelegateOptionsV2;

TfLiteGpuDelegateOptionsV2 TfLiteGpuDelegateOptionsV2Default(void);
TfLiteDelegate* TfLiteGpuDelegateV2Create(const TfLiteGpuDelegateOptionsV2* options);
void TfLiteGpuDelegateV2Delete(TfLiteDelegate* delegate);

#endif
