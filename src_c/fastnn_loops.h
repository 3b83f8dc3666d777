/* The element-wise and per-row loops of fastnn's kernels, in C so that each one is
 * compiled for several instruction sets and picked at load time (GCC's target_clones:
 * AVX-512, AVX2+FMA, baseline).  The Cython modules do validation, threading (each call
 * here handles one thread's block) and BLAS; these functions do the arithmetic.
 *
 * fastnn_loops.inc (and fastnn_gemm_small.inc, the small GEMMs) hold the bodies, written
 * once for a type T and included twice:
 * name_f32 for float, name_f64 for double.
 */
#ifndef FASTNN_LOOPS_H
#define FASTNN_LOOPS_H

#include <stdint.h>
#include <stddef.h>
#include <math.h>
#include "fastnn_math.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && __GNUC__ >= 12 && !defined(FASTNN_NO_CLONES)
#define FNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FNN_HAVE_CLONES 1
#else
#define FNN_CLONES
#define FNN_HAVE_CLONES 0
#endif

/* Arithmetic that a NumPy twin repeats operation by operation (the optimizer updates):
 * no product and sum may be contracted into one FMA, which the twin cannot do. */
#if defined(__GNUC__) && !defined(__clang__)
#define FNN_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#define FNN_NO_CONTRACT_BODY
#elif defined(__clang__)
#define FNN_NO_CONTRACT
#define FNN_NO_CONTRACT_BODY _Pragma("clang fp contract(off)")
#else
#define FNN_NO_CONTRACT
#define FNN_NO_CONTRACT_BODY
#endif

/* A shuffle of two vectors' lanes by constant indices: clang's __builtin_shufflevector
 * (GCC has it from 12 on), else GCC's __builtin_shuffle with the indices as a vector of
 * mask_t, an integer vector type of the operands' lane count and width. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define FNN_SHUFFLE(mask_t, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#endif
#endif
#ifndef FNN_SHUFFLE
#define FNN_SHUFFLE(mask_t, a, b, ...) __builtin_shuffle(a, b, (mask_t){__VA_ARGS__})
#endif

/* a helper inlined into each clone that calls it (so compiled for that clone's ISA) */
#define FNN_AI __attribute__((always_inline)) static inline
/* Calls BODY(q) with q a compile-time constant 1..8 equal to the run-time q, so that a
 * tiny side's loops unroll and their accumulators stay in registers. */
#define FNN_SMALL_DISPATCH(q, BODY) switch (q) { \
    case 1: BODY(1); break; case 2: BODY(2); break; case 3: BODY(3); break; \
    case 4: BODY(4); break; case 5: BODY(5); break; case 6: BODY(6); break; \
    case 7: BODY(7); break; default: BODY(8); break; }
/* The same for a side that may be wider than 8 (or 0): BODY(q) with the run-time q then */
#define FNN_SMALL_OR_ANY(q, BODY) if ((q) < 1 || (q) > 8) { BODY(q); } \
    else FNN_SMALL_DISPATCH(q, BODY)

/* Rows a softmax block holds: enough elements for the vectorized exp pass, few enough
 * to stay in L1 between the three passes. */
#define FNN_SOFTMAX_BLOCK_ELEMS 2048
#define FNN_SOFTMAX_MAX_ROWS 256
#define FNN_LANES 16

#define T float
#define FNN_T_IS_FLOAT 1
#define FNN_(name) name##_f32
#define FNN_EXP fnn_expf
#define FNN_FMA __builtin_fmaf
#define FNN_SQRT sqrtf
#define FNN_LOG_GE1 fnn_logf_ge1
#define FNN_LOG1P_UNIT fnn_log1pf_unit
#define FNN_TANH fnn_tanhf
#define FNN_SIGMOID fnn_sigmoidf
#include "fastnn_loops.inc"
#include "fastnn_gemm_small.inc"
#include "fastnn_two_layer.inc"
#undef T
#undef FNN_T_IS_FLOAT
#undef FNN_
#undef FNN_EXP
#undef FNN_FMA
#undef FNN_SQRT
#undef FNN_LOG_GE1
#undef FNN_LOG1P_UNIT
#undef FNN_TANH
#undef FNN_SIGMOID

#define T double
#define FNN_T_IS_FLOAT 0
#define FNN_(name) name##_f64
#define FNN_EXP fnn_exp
#define FNN_FMA __builtin_fma
#define FNN_SQRT sqrt
#define FNN_LOG_GE1 fnn_log_ge1
#define FNN_LOG1P_UNIT fnn_log1p_unit
#define FNN_TANH fnn_tanh
#define FNN_SIGMOID fnn_sigmoid
#include "fastnn_loops.inc"
#include "fastnn_gemm_small.inc"
#include "fastnn_two_layer.inc"
#undef T
#undef FNN_T_IS_FLOAT
#undef FNN_
#undef FNN_EXP
#undef FNN_FMA
#undef FNN_SQRT
#undef FNN_LOG_GE1
#undef FNN_LOG1P_UNIT
#undef FNN_TANH
#undef FNN_SIGMOID

#endif
