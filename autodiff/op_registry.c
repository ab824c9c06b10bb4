/* op_registry.c - the table of ops (ops.h's CC_OPS list, one record per
 * op in its op_<family>.c) and the questions asked of it by index. */
#include "autodiff/op.h"
#include "autodiff/ops.h"

#include <assert.h>

#define CC_OP_DECL(name) extern const cc_op_def op_def_##name;
CC_OPS(CC_OP_DECL)
#undef CC_OP_DECL
#define CC_OP_ENTRY(name) &op_def_##name,
static const cc_op_def *const op_table[OP_COUNT] = {CC_OPS(CC_OP_ENTRY)};
#undef CC_OP_ENTRY

const cc_op_def *tape_op_def(int op)
{
    assert(op >= 0 && op < OP_COUNT);
    return op_table[op];
}

int64_t tape_node_macs(const cc_node *n)
{
    const cc_op_def *d = tape_op_def(n->op);
    return d->macs ? d->macs(n) : 0;
}
