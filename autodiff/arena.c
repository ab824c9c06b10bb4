/* arena.c - see arena.h. */
#include "autodiff/arena.h"

#include <string.h>

static cc_arena_block *block_new(cc_ctx *ctx, size_t cap, cc_status *st)
{
    cc_arena_block *b = ctx_alloc(ctx, sizeof *b, st);
    if (!b) return NULL;
    b->mem = ctx_alloc(ctx, cap, st);
    if (!b->mem) {
        ctx_release(ctx, b, sizeof *b);
        return NULL;
    }
    b->cap = cap;
    b->used = 0;
    b->next = NULL;
    return b;
}

static void block_free(cc_ctx *ctx, cc_arena_block *b)
{
    ctx_release(ctx, b->mem, b->cap);
    ctx_release(ctx, b, sizeof *b);
}

void arena_init(cc_arena *a, cc_ctx *ctx)
{
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
}

void *arena_alloc(cc_arena *a, size_t bytes, cc_status *st)
{
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    const size_t def_cap = (size_t)16 << 20;
    cc_arena_block *b = a->head;
    if (!b || b->used + n > b->cap) {
        /* Overflow (first steps only).  A request larger than a default
         * block gets a block of its own, linked behind the head so the
         * head's free room still serves the next small requests; the peak
         * of an overflowing step stays close to its high-water mark. */
        b = block_new(a->ctx, n > def_cap ? n : def_cap, st);
        if (!b) return NULL;
        if (n > def_cap && a->head) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->mem + b->used;
    b->used += n;
    a->step_bytes += n;
    if (a->step_bytes > a->high_water) a->high_water = a->step_bytes;
    return p;
}

void *arena_calloc(cc_arena *a, size_t bytes, cc_status *st)
{
    void *p = arena_alloc(a, bytes, st);
    if (p) memset(p, 0, bytes);
    return p;
}

void arena_reset(cc_arena *a)
{
    if (a->head && a->head->next) {
        /* The step overflowed: replace the chain by one block big enough for
         * the largest step seen, so the next step fits without allocating. */
        while (a->head) {
            cc_arena_block *n = a->head->next;
            block_free(a->ctx, a->head);
            a->head = n;
        }
        a->head = block_new(a->ctx, a->high_water, NULL);
    }
    if (a->head) a->head->used = 0;
    a->step_bytes = 0;
}

void arena_free(cc_arena *a)
{
    while (a->head) {
        cc_arena_block *n = a->head->next;
        block_free(a->ctx, a->head);
        a->head = n;
    }
    a->step_bytes = a->high_water = 0;
}
