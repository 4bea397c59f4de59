#pragma once
/* oneDNN 2.x (Debian libdnnl-dev, which ships no pkg-config file): the matmul primitive runs bf16
   products with fp32 sums on CPUs with avx512_bf16. */
#include <oneapi/dnnl/dnnl.h>
/* oneDNN threads with OpenMP (libgomp); each thread that calls it runs it on one OpenMP thread. */
void omp_set_num_threads(int num_threads);
