#pragma once
#include <zmq.h>

#ifdef __linux__
#include <sys/prctl.h>
#include <signal.h>
/// Has the kernel send `sig` to this process when its parent dies (prctl is variadic: Swift cannot call it).
static inline int ugen_die_with_parent(int sig) { return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0); }
#else
static inline int ugen_die_with_parent(int sig) { (void)sig; return -1; }
#endif
