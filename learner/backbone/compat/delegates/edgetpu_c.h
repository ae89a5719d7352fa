/* Declarations of Coral's Edge TPU C API (libedgetpu) used by go-tflite's
 * edgetpu delegate, for compile checks only (see README.md). */
#ifndef WHISKER_VET_EDGETPU_C_H_
#define WHISKER_VET_EDGETPU_C_H_

#include <stddef.h>

#include "tensorflow/lite/c/common.h"

enum edgetpu_device_type {
  EDGETPU_APEX_PCI = 0,
  EDGETPU_APEX_USB = 1,
};

struct edgetpu_device {
  enum edgetpu_device_type type;
  const char* path;
};

struct edgetpu_option {
  const char* name;
  const char* value;
};

struct edgetpu_device* edgetpu_list_devices(size_t* num_devices);
void edgetpu_free_devices(struct edgetpu_device* dev);
TfLiteDelegate* edgetpu_create_delegate(enum edgetpu_device_type type, const char* name,
                                        const struct edgetpu_option* options, size_t num_options);
void edgetpu_free_delegate(TfLiteDelegate* delegate);
void edgetpu_verbosity(int verbosity);
const char* edgetpu_version(void);

#endif
