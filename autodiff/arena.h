/* arena.h - bump allocator for one training/inference step.
 *
 * Every activation, gradient and temporary of a step comes from the tape's
 * arena; arena_reset() frees them all at once.  When a step needs more than
 * the current block, overflow blocks are chained; the next reset merges them
 * into one block of the high-water size, so from the second identical step
 * on the arena performs no heap allocation and returns the same addresses.
 */
#ifndef CC_ARENA_H
#define CC_ARENA_H

#include <stddef.h>

#include "autodiff/ctx.h"

typedef struct cc_arena_block {
    struct cc_arena_block *next;
    size_t cap, used;
    char *mem;
} cc_arena_block;

typedef struct cc_arena {
    cc_ctx *ctx;
    cc_arena_block *head;      /* current block (first in list) */
    size_t step_bytes;         /* bytes handed out since the last reset */
    size_t high_water;         /* max step_bytes over all steps */
} cc_arena;

void arena_init(cc_arena *a, cc_ctx *ctx);

/* 64-byte aligned, NOT zeroed.  NULL + status on out of memory. */
void *arena_alloc(cc_arena *a, size_t bytes, cc_status *st);

/* Same, zero-filled. */
void *arena_calloc(cc_arena *a, size_t bytes, cc_status *st);

/* Forget every allocation; coalesce blocks if the last step overflowed. */
void arena_reset(cc_arena *a);

void arena_free(cc_arena *a);

#endif
