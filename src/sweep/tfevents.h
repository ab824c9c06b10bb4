/* tfevents.h - TensorBoard event files, written without TensorFlow.
 *
 * An event file is a TFRecord stream: per record a little-endian u64 length,
 * the masked CRC32C of those 8 bytes, the payload, and the masked CRC32C of
 * the payload.  Each payload is a protobuf `tensorflow.Event`; the first one
 * carries file_version "brain.Event:2", the others a Summary with scalar
 * (simple_value) or text (tensor of one string, plugin "text") values.  The
 * protobuf encoding here covers just those fields (see tests/event.proto for
 * the schema the tests decode them with).
 *
 * TensorBoard (and tools that import its files: Weights & Biases, Aim) only
 * loads files whose name contains "tfevents"; tfevents_open names the file
 * `events.out.tfevents.<time>.<host>` as TensorFlow does.
 */
#ifndef CC_TFEVENTS_H
#define CC_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autodiff/status.h"

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of n bytes,
 * continuing from crc (0 to start).  CRC32C("123456789") = 0xE3069283. */
uint32_t tfevents_crc32c(uint32_t crc, const void *data, size_t n);

/* TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t tfevents_mask_crc(uint32_t crc);

/* An event file being written: to a temporary name, renamed into place by
 * tfevents_close(commit = 1), so that a reader never sees half a file. */
typedef struct tfevents_writer {
    FILE *f;
    char path[4096], tmp[4096 + 32];
    int err;                    /* a write failed: close reports it */
} tfevents_writer;

/* Create dir (and parents) and start dir/events.out.tfevents.<time>.<host>
 * (time: whole seconds of wall_time) with the file_version event.  host
 * NULL or empty = "localhost"; '/' in it becomes '_'.  Returns 0, or -1
 * with st naming the file. */
int tfevents_open(tfevents_writer *w, const char *dir, double wall_time, const char *host,
                  cc_status *st);

/* Append one scalar event (Summary.Value{tag, simple_value}). */
void tfevents_scalar(tfevents_writer *w, const char *tag, int64_t step, double wall_time,
                     float value);

/* Append one text event (TensorBoard's text plugin renders it as Markdown). */
void tfevents_text(tfevents_writer *w, const char *tag, int64_t step, double wall_time,
                   const char *text);

/* Finish: commit = 1 flushes, checks every write and renames the file into
 * place (0, or -1 with st: disk full, ...); commit = 0 removes it. */
int tfevents_close(tfevents_writer *w, int commit, cc_status *st);

/* The name tfevents_open gives: "events.out.tfevents.<sec>.<host>". */
void tfevents_file_name(double wall_time, const char *host, char *out, size_t len);

#endif
