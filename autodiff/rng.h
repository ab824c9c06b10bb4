/* rng.h - small deterministic random number generator.
 *
 * xoshiro256** state seeded through splitmix64 from (seed, stream), so that
 * independent streams (one per image, per parameter, per thread chunk) give
 * the same numbers whatever the thread count or the order of use.
 * Not cryptographic.  No global state: every user owns its cc_rng.
 */
#ifndef CC_RNG_H
#define CC_RNG_H

#include <stdint.h>

typedef struct cc_rng {
    uint64_t s[4];
} cc_rng;

/* Seed stream `stream` of generator family `seed`. */
void rng_seed(cc_rng *r, uint64_t seed, uint64_t stream);

/* Next 64 random bits. */
uint64_t rng_next(cc_rng *r);

/* Uniform double in [0, 1) with 53 random bits. */
double rng_uniform(cc_rng *r);

/* Uniform in [lo, hi). */
double rng_range(cc_rng *r, double lo, double hi);

/* Standard normal (Box-Muller; uses two uniforms per call, no caching so
 * the stream position is a pure function of the call count). */
double rng_normal(cc_rng *r);

/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(cc_rng *r, uint64_t n);

/* Fisher-Yates shuffle of idx[0..n). */
void rng_shuffle(cc_rng *r, int64_t *idx, int64_t n);

#endif
