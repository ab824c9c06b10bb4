/* tensor.c - see tensor.h. */
#include "autodiff/tensor.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

int64_t tensor_numel(const cc_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->dims[i];
    return n;
}

size_t tensor_bytes(const cc_tensor *t) { return dnnl_memory_desc_get_size(&t->md); }

void tensor_md_plain(dnnl_memory_desc_t *md, int ndim, const int64_t *dims)
{
    static const dnnl_format_tag_t tags[] = {dnnl_a, dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd};
    assert(ndim >= 1 && ndim <= CC_MAX_DIMS);
    dnnl_dims_t d;
    for (int i = 0; i < ndim; i++) d[i] = dims[i];
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(md, ndim, d, dnnl_f32, tags[ndim]);
    assert(s == dnnl_success);
    (void)s;
}

int tensor_is_plain(const cc_tensor *t)
{
    dnnl_memory_desc_t p;
    tensor_md_plain(&p, t->ndim, t->dims);
    return dnnl_memory_desc_equal(&p, &t->md);
}

void tensor_set_shape(cc_tensor *t, int ndim, const int64_t *dims)
{
    assert(ndim >= 1 && ndim <= CC_MAX_DIMS);
    t->ndim = ndim;
    for (int i = 0; i < CC_MAX_DIMS; i++) t->dims[i] = i < ndim ? dims[i] : 1;
    t->dtype = CC_F32;
    tensor_md_plain(&t->md, ndim, dims);
}

int tensor_same_shape(const cc_tensor *a, const cc_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

const char *tensor_shape_str(const cc_tensor *t, char *buf, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? "x%lld" : "%lld", (long long)t->dims[i]);
    return buf;
}

float tensor_item(const cc_tensor *t)
{
    assert(tensor_numel(t) == 1);
    return t->data[0];
}
