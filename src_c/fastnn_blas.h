/* BLAS runs single-threaded inside fastnn: fastnn's own OpenMP team splits a large GEMM
 * into a fixed grid of output blocks (_common.pxd's team_gemm), so the BLAS library must
 * not split each block again.  That is what makes a whole training run bit-identical at
 * 1, 2 and N threads: every output element is computed by one single-threaded BLAS call
 * whose arguments depend on the matrix shapes only.
 *
 * The BLAS is whichever library scipy.linalg.cython_blas resolves sgemm to (scipy's
 * OpenBLAS).  Its thread setter is found once, lazily, from the address of that sgemm
 * (dladdr gives the library file, dlsym the setter); a BLAS without one (or a platform
 * without dladdr) is left alone.  The previous count is restored when fastnn's call
 * returns: nothing changes for the rest of the process.
 */
#ifndef FASTNN_BLAS_H
#define FASTNN_BLAS_H

#include <stdio.h>

#if defined(__linux__) || defined(__APPLE__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#define FNN_HAVE_DLADDR 1
#else
#define FNN_HAVE_DLADDR 0
#endif

typedef int (*fnn_blas_get_fn)(void);
typedef void (*fnn_blas_set_fn)(int);

static int fnn_blas_looked_up = 0;
static fnn_blas_get_fn fnn_blas_get = 0;
static fnn_blas_set_fn fnn_blas_set = 0;

/* gemm_addr: the address of the sgemm fastnn calls (any symbol of the library). */
static void fnn_blas_lookup(const void* gemm_addr)
{
#if FNN_HAVE_DLADDR
    static const char* const prefixes[] = {"scipy_", "", 0};
    Dl_info info;
    if (gemm_addr != 0 && dladdr(gemm_addr, &info) && info.dli_fname != 0) {
        void* lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
        if (lib != 0) {
            char name[64];
            int i;
            for (i = 0; prefixes[i] != 0 && fnn_blas_set == 0; i++) {
                fnn_blas_get_fn g;
                fnn_blas_set_fn s;
                snprintf(name, sizeof name, "%sopenblas_get_num_threads", prefixes[i]);
                g = (fnn_blas_get_fn)dlsym(lib, name);
                snprintf(name, sizeof name, "%sopenblas_set_num_threads", prefixes[i]);
                s = (fnn_blas_set_fn)dlsym(lib, name);
                if (g != 0 && s != 0) {
                    fnn_blas_get = g;
                    fnn_blas_set = s;
                }
            }
            dlclose(lib);   /* NOLOAD took a reference on a library that stays loaded */
        }
    }
#else
    (void)gemm_addr;
#endif
    fnn_blas_looked_up = 1;
}

/* Make BLAS single-threaded; returns what to pass to fnn_blas_serial_end (0: nothing
 * was changed).  Called outside parallel regions only. */
static inline int fnn_blas_serial_begin(const void* gemm_addr)
{
    int prev;
    if (!fnn_blas_looked_up)
        fnn_blas_lookup(gemm_addr);
    if (fnn_blas_set == 0)
        return 0;
    prev = fnn_blas_get();
    if (prev == 1)
        return 0;
    fnn_blas_set(1);
    return prev;
}

static inline void fnn_blas_serial_end(int prev)
{
    if (prev > 1 && fnn_blas_set != 0)
        fnn_blas_set(prev);
}

/* Whether the thread setter was found (for show_config and the tests). */
static inline int fnn_blas_controlled(const void* gemm_addr)
{
    if (!fnn_blas_looked_up)
        fnn_blas_lookup(gemm_addr);
    return fnn_blas_set != 0;
}

#endif
