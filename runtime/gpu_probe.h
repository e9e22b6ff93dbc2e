/* gpu_probe.h - is there an NVIDIA GPU here? The CUDA driver is loaded from the machine the
 * trainer runs on (never linked), so a trainer built on a laptop starts on any cluster node.
 *
 *   char msg[256];
 *   int n = gpu_probe(msg, sizeof msg);   // devices, or 0 with msg saying why there are none
 */
#ifndef LLFC_GPU_PROBE_H
#define LLFC_GPU_PROBE_H

#include <stddef.h>

/* The number of CUDA devices the driver reports (after CUDA_VISIBLE_DEVICES), 0 when there is
 * no driver or no device; msg says what was found or what was looked for and where. */
int gpu_probe(char *msg, size_t len);

#endif
