/* Scalar building blocks for fastnn's kernels, written so that gcc/clang vectorize the
 * loops that call them: no branches (only selects), no libm calls, no errno.
 *
 *   fnn_expf / fnn_exp   exp(x) in float / double, <= 2 ulp, with gradual underflow
 *                        and overflow to +inf; NaN propagates.
 *   fnn_log_ge1(f)       log(x) for x >= 1 (a softmax's normalizer), <= 1.15 ulp.
 *   fnn_tanh(f)          tanh(x), <= ~2.5 ulp over the whole line (accurate near 0).
 *   fnn_sigmoid(f)       1 / (1 + exp(-x)) without overflow or cancellation.
 *   fnn_mix64            the SplitMix64 finalizer, the counter-based generator behind
 *                        dropout masks (fastnn.reference reproduces it in NumPy).
 *   FNN_HAVE_OPENMP      whether the kernels were compiled with OpenMP.
 */
#ifndef FASTNN_MATH_H
#define FASTNN_MATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#ifdef _OPENMP
#define FNN_HAVE_OPENMP 1
#else
#define FNN_HAVE_OPENMP 0
#endif

/* Below this many element-operations a kernel runs on one thread: waking the sleeping
 * (passive) OpenMP workers costs ~30 us, more than the work of a spiral-size kernel. */
#define FNN_PARALLEL_MIN_WORK 262144

static inline float fnn_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint32_t fnn_f32_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline double fnn_f64_from_bits(uint64_t u) { double f; memcpy(&f, &u, sizeof f); return f; }
static inline uint64_t fnn_f64_bits(double f) { uint64_t u; memcpy(&u, &f, sizeof u); return u; }

/* exp in float.  x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its
 * degree-7 Taylor polynomial (truncation < 1e-8 relative), then 2^n applied as two
 * factors 2^n1 * 2^n2 so that results in the subnormal range round gradually instead
 * of flushing to zero.  n comes from the "shifter" trick: adding 1.5*2^23 leaves
 * round(x*log2e) in the low mantissa bits, read back by integer subtraction. */
static inline float fnn_expf_core(float xc)
{
    const float shifter = 12582912.0f;            /* 1.5 * 2^23 */
    float t = xc * 1.44269504088896341f + shifter;
    float n = t - shifter;
    int32_t ni = (int32_t)(fnn_f32_bits(t) - fnn_f32_bits(shifter));
    float r = xc - n * 0.693359375f;              /* ln2 high part: exact product */
    r = r - n * -2.12194440e-4f;                  /* ln2 low part */
    float p = 1.98412698e-4f;                     /* 1/7! */
    p = p * r + 1.38888889e-3f;                   /* 1/6! */
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* n1 = floor(n/2) without an arithmetic shift (keeps it vectorizable on SSE2) */
    int32_t n1 = (int32_t)((uint32_t)(ni + 256) >> 1) - 128;
    int32_t n2 = ni - n1;
    float s1 = fnn_f32_from_bits((uint32_t)(n1 + 127) << 23);
    float s2 = fnn_f32_from_bits((uint32_t)(n2 + 127) << 23);
    /* x <= -104 was clamped to -104, where p * 2^-150 < 2^-150 rounds to exactly 0 */
    return (p * s1) * s2;
}

/* exp(x) for any float x: overflow to +inf, gradual underflow, NaN propagates. */
static inline float fnn_expf(float x)
{
    float xc = x < -104.0f ? -104.0f : x;
    return fnn_expf_core(xc > 89.0f ? 89.0f : xc);    /* exp(89) > FLT_MAX */
}

/* exp in double: same scheme, degree-13 Taylor polynomial (truncation < 1e-17). */
static inline double fnn_exp_core(double xc)
{
    const double shifter = 6755399441055744.0;    /* 1.5 * 2^52 */
    double t = xc * 1.4426950408889634074 + shifter;
    double n = t - shifter;
    int64_t ni = (int64_t)(fnn_f64_bits(t) - fnn_f64_bits(shifter));
    double r = xc - n * 6.93147180369123816490e-01;   /* fdlibm's ln2_hi */
    r = r - n * 1.90821492927058770002e-10;           /* fdlibm's ln2_lo */
    double p = 1.6059043836821614599e-10;             /* 1/13! */
    p = p * r + 2.0876756987868098979e-09;            /* 1/12! */
    p = p * r + 2.5052108385441718775e-08;
    p = p * r + 2.7557319223985890653e-07;
    p = p * r + 2.7557319223985890653e-06;
    p = p * r + 2.4801587301587301587e-05;
    p = p * r + 1.9841269841269841270e-04;
    p = p * r + 1.3888888888888888889e-03;
    p = p * r + 8.3333333333333333333e-03;
    p = p * r + 4.1666666666666666667e-02;
    p = p * r + 1.6666666666666666667e-01;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t n1 = (int64_t)((uint64_t)(ni + 2048) >> 1) - 1024;
    int64_t n2 = ni - n1;
    double s1 = fnn_f64_from_bits((uint64_t)(n1 + 1023) << 52);
    double s2 = fnn_f64_from_bits((uint64_t)(n2 + 1023) << 52);
    /* clamped at -746: p * 2^-1076 < 2^-1075 rounds to exactly 0 */
    return (p * s1) * s2;
}

static inline double fnn_exp(double x)
{
    double xc = x < -746.0 ? -746.0 : x;
    return fnn_exp_core(xc > 710.0 ? 710.0 : xc);
}

/* log(x) for x >= 1 (a softmax's normalizer, sum_j e^(s_j - max s) >= 1; +inf and NaN
 * pass through), branch-free so that a loop over rows vectorizes where libm's log is a
 * call per row.  x = 2^e m with m in [sqrt(1/2), sqrt(2)) read off the bits; f = m - 1
 * (exact: Sterbenz); log m = 2 atanh(s), s = f / (2 + f), |s| <= 0.172, whose series
 * 2s + 2s^3/3 + ... is rewritten with 2s = f - f s as f - s (f - s^2 Q(s^2)), so that the
 * leading term f is exact and only a correction of at most 17% of it carries rounding
 * error; Q is the series' tail 2/3 + 2/5 s^2 + ..., cut where the next term is below
 * half an ulp (s^20 double, s^10 float).  Then e ln2, with ln2 split hi + lo (hi with
 * trailing zeros, so e * hi is exact).  Measured against an extended-precision log over
 * 2e7 points in [1, e^700]: <= 1.15 ulp (double), <= 0.9 ulp (float); the softmax tests
 * compare the losses with numpy's. */
static inline double fnn_log_ge1(double x)
{
    uint64_t u = fnn_f64_bits(x);
    int64_t e = (int64_t)(u >> 52) - 1023;
    double m = fnn_f64_from_bits((u & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
    int big = m > 1.41421356237309504880;
    m = big ? 0.5 * m : m;
    double ed = (double)(e + big);
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double s2 = s * s;
    double q = 2.0 / 21;
    q = q * s2 + 2.0 / 19;
    q = q * s2 + 2.0 / 17;
    q = q * s2 + 2.0 / 15;
    q = q * s2 + 2.0 / 13;
    q = q * s2 + 2.0 / 11;
    q = q * s2 + 2.0 / 9;
    q = q * s2 + 2.0 / 7;
    q = q * s2 + 2.0 / 5;
    q = q * s2 + 2.0 / 3;
    double logm = f - s * (f - s2 * q);
    double r = ed * 6.93147180369123816490e-01 + (ed * 1.90821492927058770002e-10 + logm);
    r = x == INFINITY ? x : r;
    return x != x ? x : r;
}

static inline float fnn_logf_ge1(float x)
{
    uint32_t u = fnn_f32_bits(x);
    int32_t e = (int32_t)(u >> 23) - 127;
    float m = fnn_f32_from_bits((u & 0x007FFFFFu) | 0x3F800000u);
    int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    float ed = (float)(e + big);
    float f = m - 1.0f;
    float s = f / (2.0f + f);
    float s2 = s * s;
    float q = 2.0f / 11;
    q = q * s2 + 2.0f / 9;
    q = q * s2 + 2.0f / 7;
    q = q * s2 + 2.0f / 5;
    q = q * s2 + 2.0f / 3;
    float logm = f - s * (f - s2 * q);
    float r = ed * 0.693359375f + (ed * -2.12194440e-4f + logm);
    r = x == INFINITY ? x : r;
    return x != x ? x : r;
}

/* tanh.  |x| > 0.625: 1 - 2 / (e^{2|x|} + 1), which loses nothing there (the subtracted
 * term is below 0.45 of the result's size) and saturates cleanly to +-1 when the exp
 * overflows.  |x| <= 0.625, where that formula cancels (tanh x ~ x near 0): the odd
 * rational approximation x + x^3 P(x^2) / Q(x^2) of Cephes' tanh (S. L. Moshier),
 * measured here at <= 1.3 ulp double / 1.3 ulp float against an extended-precision tanh.
 * Both branches are computed and one selected, so loops over it vectorize; the unused
 * one may overflow to inf/NaN harmlessly. */
static inline double fnn_tanh(double x)
{
    double a = fabs(x);
    double s = x * x;
    double p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s
               - 1.61468768441708447952e3;
    double q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s
               + 4.84406305325125486048e3;
    double small = x + x * s * (p / q);
    double big = 1.0 - 2.0 / (fnn_exp(2.0 * a) + 1.0);
    big = x < 0.0 ? -big : big;
    return a > 0.625 ? big : small;
}

static inline float fnn_tanhf(float x)
{
    float a = fabsf(x);
    float s = x * x;
    float p = (((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s
               + 1.33314422036e-1f) * s - 3.33332819422e-1f;
    float small = x + p * s * x;
    float big = 1.0f - 2.0f / (fnn_expf(2.0f * a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a > 0.625f ? big : small;
}

/* The logistic sigmoid.  e = exp(-|x|) lies in (0, 1], so nothing overflows; for x < 0
 * the result is e / (1 + e), which keeps full relative accuracy as it approaches 0. */
static inline double fnn_sigmoid(double x)
{
    double e = fnn_exp(-fabs(x));
    double r = 1.0 / (1.0 + e);
    return x >= 0.0 ? r : e * r;
}

static inline float fnn_sigmoidf(float x)
{
    float e = fnn_expf(-fabsf(x));
    float r = 1.0f / (1.0f + e);
    return x >= 0.0f ? r : e * r;
}

/* log1p(e) for e in [0, 1] (the logistic loss's log(1 + exp(-|s|))), vectorizable.
 * log(1 + e) = 2 atanh(t) with t = e / (2 + e), accurate for tiny e; above
 * e = sqrt(2) - 1 the argument is halved first: log(1 + e) = ln2 + 2 atanh(t') with
 * t' = (e - 1) / (e + 3).  Either way |t| <= 0.1716, and the odd series
 * 2 (t + t^3/3 + t^5/5 + ...) converges to double precision in 12 terms. */
static inline double fnn_log1p_unit(double e)
{
    int big = e > 0.41421356237309503;
    double t = big ? (e - 1.0) / (e + 3.0) : e / (e + 2.0);
    double t2 = t * t;
    double p = 2.0 / 23;
    p = p * t2 + 2.0 / 21;
    p = p * t2 + 2.0 / 19;
    p = p * t2 + 2.0 / 17;
    p = p * t2 + 2.0 / 15;
    p = p * t2 + 2.0 / 13;
    p = p * t2 + 2.0 / 11;
    p = p * t2 + 2.0 / 9;
    p = p * t2 + 2.0 / 7;
    p = p * t2 + 2.0 / 5;
    p = p * t2 + 2.0 / 3;
    p = p * t2 + 2.0;
    return t * p + (big ? 0.69314718055994530942 : 0.0);
}

static inline float fnn_log1pf_unit(float e)
{
    int big = e > 0.41421356f;
    float t = big ? (e - 1.0f) / (e + 3.0f) : e / (e + 2.0f);
    float t2 = t * t;
    float p = 2.0f / 11;
    p = p * t2 + 2.0f / 9;
    p = p * t2 + 2.0f / 7;
    p = p * t2 + 2.0f / 5;
    p = p * t2 + 2.0f / 3;
    p = p * t2 + 2.0f;
    return t * p + (big ? 0.693147180559945f : 0.0f);
}

/* SplitMix64's output function (Steele, Lea & Flood 2014; constants of Vigna's
 * reference).  Applied to a counter it is a counter-based generator: element e of a
 * dropout mask depends only on (key, e), never on which thread computes it. */
#define FNN_GOLDEN 0x9E3779B97F4A7C15ULL
static inline uint64_t fnn_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The key of one dropout draw: a function of the user's seed and the step counter. */
static inline uint64_t fnn_dropout_key(uint64_t seed, uint64_t step)
{
    uint64_t k0 = fnn_mix64(seed + FNN_GOLDEN);
    return fnn_mix64(k0 + (step + 1) * FNN_GOLDEN);
}

#endif
