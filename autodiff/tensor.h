/* tensor.h - the engine's tensor: up to 4 logical dims (N,C,H,W), a oneDNN
 * memory descriptor giving the physical layout (plain or blocked, e.g.
 * nChw8c), and data/grad pointers owned by someone else (a tape's arena or
 * a parameter slab).
 *
 * Logical dims are always in PyTorch order; the layout only says how they sit
 * in memory.  A blocked layout may be padded (C=1 in nChw8c occupies 8
 * channels), so the physical size is tensor_bytes(), not numel*4.  Padding is
 * kept zero by every op.
 */
#ifndef CC_TENSOR_H
#define CC_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <oneapi/dnnl/dnnl.h>

#include "autodiff/status.h"

#define CC_MAX_DIMS 4

typedef enum cc_dtype { CC_F32 = 0, CC_BF16 = 1 } cc_dtype;

struct cc_node;

typedef struct cc_tensor {
    int ndim;                   /* 1..4 */
    int64_t dims[CC_MAX_DIMS];  /* logical, PyTorch order */
    cc_dtype dtype;             /* only CC_F32 is implemented */
    dnnl_memory_desc_t md;      /* physical layout */
    float *data;
    float *grad;                /* same layout as data; NULL until needed */
    int requires_grad;          /* gradient wanted for this tensor */
    int grad_ready;             /* grad holds a value: later writes add */
    int is_param;               /* grad lives in a parameter slab */
    struct cc_node *creator;    /* node that produced it; NULL for leaves */
} cc_tensor;

/* Number of logical elements. */
int64_t tensor_numel(const cc_tensor *t);

/* Physical size in bytes, padding included. */
size_t tensor_bytes(const cc_tensor *t);

/* 1 when the layout is dense row-major in logical order (abcd...). */
int tensor_is_plain(const cc_tensor *t);

/* Fill md with the plain row-major f32 layout of dims[0..ndim). */
void tensor_md_plain(dnnl_memory_desc_t *md, int ndim, const int64_t *dims);

/* Set ndim/dims and a plain md; leaves pointers alone. */
void tensor_set_shape(cc_tensor *t, int ndim, const int64_t *dims);

/* Same logical shape? */
int tensor_same_shape(const cc_tensor *a, const cc_tensor *b);

/* "2x64x48x64" into buf (for error messages).  Returns buf. */
const char *tensor_shape_str(const cc_tensor *t, char *buf, size_t n);

/* The value of a 1-element tensor. */
float tensor_item(const cc_tensor *t);

#endif
