/* tfevents.c - TensorBoard event files (see tfevents.h). */
#include "src/sweep/tfevents.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/data/fsutil.h"

uint32_t tfevents_crc32c(uint32_t crc, const void *data, size_t n)
{
    /* Bitwise: event files are small, and no table means no shared state. */
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t tfevents_mask_crc(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ---- a growable protobuf message ---- */

typedef struct pb {
    unsigned char *b;
    size_t n, cap;
    int err;                    /* out of memory */
} pb;

static void pb_bytes(pb *m, const void *data, size_t n)
{
    if (m->err) return;
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 128;
        while (cap < m->n + n) cap *= 2;
        unsigned char *b = realloc(m->b, cap);
        if (!b) {
            m->err = 1;
            return;
        }
        m->b = b;
        m->cap = cap;
    }
    if (n) memcpy(m->b + m->n, data, n);
    m->n += n;
}

static void pb_varint(pb *m, uint64_t v)
{
    unsigned char b[10];
    size_t k = 0;
    do {
        b[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) b[k] |= 0x80;
        k++;
    } while (v);
    pb_bytes(m, b, k);
}

/* wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
static void pb_key(pb *m, int field, int wire)
{
    pb_varint(m, ((uint64_t)field << 3) | (uint64_t)wire);
}

static void pb_le(pb *m, uint64_t v, int nbytes)
{
    unsigned char b[8];
    for (int i = 0; i < nbytes; i++) b[i] = (unsigned char)(v >> (8 * i));
    pb_bytes(m, b, (size_t)nbytes);
}

static void pb_double(pb *m, int field, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    pb_key(m, field, 1);
    pb_le(m, u, 8);
}

static void pb_float(pb *m, int field, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    pb_key(m, field, 5);
    pb_le(m, u, 4);
}

static void pb_int(pb *m, int field, int64_t v)
{
    pb_key(m, field, 0);
    pb_varint(m, (uint64_t)v);  /* int64: negative values as 10-byte two's complement */
}

static void pb_lenbytes(pb *m, int field, const void *data, size_t n)
{
    pb_key(m, field, 2);
    pb_varint(m, n);
    pb_bytes(m, data, n);
}

static void pb_str(pb *m, int field, const char *s)
{
    pb_lenbytes(m, field, s, strlen(s));
}

/* A nested message as a length-delimited field; frees sub. */
static void pb_sub(pb *m, int field, pb *sub)
{
    if (sub->err) m->err = 1;
    pb_lenbytes(m, field, sub->b, sub->n);
    free(sub->b);
    memset(sub, 0, sizeof *sub);
}

/* ---- records ---- */

static void write_record(tfevents_writer *w, pb *event)
{
    if (event->err) w->err = 1;
    if (w->err) {
        free(event->b);
        return;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)event->n >> (8 * i));
    uint32_t c1 = tfevents_mask_crc(tfevents_crc32c(0, len, 8));
    uint32_t c2 = tfevents_mask_crc(tfevents_crc32c(0, event->b, event->n));
    unsigned char c[4];
    for (int i = 0; i < 4; i++) c[i] = (unsigned char)(c1 >> (8 * i));
    if (fwrite(len, 1, 8, w->f) != 8 || fwrite(c, 1, 4, w->f) != 4 ||
        fwrite(event->b, 1, event->n, w->f) != event->n)
        w->err = 1;
    for (int i = 0; i < 4; i++) c[i] = (unsigned char)(c2 >> (8 * i));
    if (fwrite(c, 1, 4, w->f) != 4) w->err = 1;
    free(event->b);
}

/* Event fields: wall_time = 1, step = 2, file_version = 3, summary = 5.
 * Summary: value = 1.  Value: tag = 1, simple_value = 2, tensor = 8,
 * metadata = 9. */
static void event_head(pb *e, int64_t step, double wall_time)
{
    pb_double(e, 1, wall_time);
    if (step) pb_int(e, 2, step);       /* proto3: 0 is the default, not written */
}

void tfevents_scalar(tfevents_writer *w, const char *tag, int64_t step, double wall_time,
                     float value)
{
    pb e = {0}, summary = {0}, v = {0};
    event_head(&e, step, wall_time);
    pb_str(&v, 1, tag);
    pb_float(&v, 2, value);
    pb_sub(&summary, 1, &v);
    pb_sub(&e, 5, &summary);
    write_record(w, &e);
}

void tfevents_text(tfevents_writer *w, const char *tag, int64_t step, double wall_time,
                   const char *text)
{
    pb e = {0}, summary = {0}, v = {0}, meta = {0}, plugin = {0}, tensor = {0}, shape = {0};
    event_head(&e, step, wall_time);
    pb_str(&v, 1, tag);
    /* SummaryMetadata.plugin_data (1) = PluginData{plugin_name (1) = "text"} */
    pb_str(&plugin, 1, "text");
    pb_sub(&meta, 1, &plugin);
    pb_sub(&v, 9, &meta);
    /* TensorProto: dtype (1) = DT_STRING (7), tensor_shape (2) = scalar
     * (an empty TensorShapeProto), string_val (8) = the text */
    pb_int(&tensor, 1, 7);
    pb_sub(&tensor, 2, &shape);
    pb_str(&tensor, 8, text);
    pb_sub(&v, 8, &tensor);
    pb_sub(&summary, 1, &v);
    pb_sub(&e, 5, &summary);
    write_record(w, &e);
}

void tfevents_file_name(double wall_time, const char *host, char *out, size_t len)
{
    char h[256];
    snprintf(h, sizeof h, "%s", host && *host ? host : "localhost");
    for (char *p = h; *p; p++)
        if (*p == '/') *p = '_';
    snprintf(out, len, "events.out.tfevents.%lld.%s", (long long)wall_time, h);
}

int tfevents_open(tfevents_writer *w, const char *dir, double wall_time, const char *host,
                  cc_status *st)
{
    memset(w, 0, sizeof *w);
    char name[300];
    tfevents_file_name(wall_time, host, name, sizeof name);
    if (snprintf(w->path, sizeof w->path, "%s/%s", dir, name) >= (int)sizeof w->path)
        return status_set(st, "%s: path too long", dir);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", w->path, (long)getpid());
    if (fs_mkdirs(dir, st)) return -1;
    if (!(w->f = fopen(w->tmp, "wb")))
        return status_set(st, "%s: cannot create (%s)", w->tmp, strerror(errno));
    pb e = {0};
    event_head(&e, 0, wall_time);
    pb_str(&e, 3, "brain.Event:2");
    write_record(w, &e);
    return 0;
}

int tfevents_close(tfevents_writer *w, int commit, cc_status *st)
{
    if (!w->f) return 0;
    int bad = ferror(w->f) || w->err;
    if (fclose(w->f)) bad = 1;
    w->f = NULL;
    if (!commit) {
        unlink(w->tmp);
        return 0;
    }
    if (bad) {
        unlink(w->tmp);
        return status_set(st, "%s: write failed (disk full?)", w->path);
    }
    if (rename(w->tmp, w->path)) {
        int e = errno;
        unlink(w->tmp);
        return status_set(st, "%s: cannot replace (%s)", w->path, strerror(e));
    }
    return 0;
}
