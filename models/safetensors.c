/* safetensors.c - placeholder until the reader lands (see safetensors.h). */
#include "safetensors.h"
