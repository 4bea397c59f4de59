#pragma once
#include <cblas.h>
/* OpenBLAS extensions (declared in openblas_config/cblas.h of the pthread build). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
