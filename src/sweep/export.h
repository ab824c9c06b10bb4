/* export.h - run files into the formats researchers' tools read:
 * TensorBoard event files and one long CSV table for pandas.
 *
 * Input is a finished report (report.h: report_add + report_finish), so
 * runs, sweep directories and run names are found exactly as `report` finds
 * them, and the "sweep keys" are the configuration keys that differ between
 * the runs.  Every run file is read once, whole, by runlog_open; runlog
 * replaces run.h5 by rename, so the open file is a consistent snapshot even
 * while the run is still training.
 *
 * Names (stable; docs/REPORT.md):
 *   metrics rows   tag  <stage>/<split>/<metric>   e.g. counter/val/mae
 *                  stage fpn|counter, split train|val|test, step = epoch (1-based)
 *   eval tables    tag  eval/<split>/<group>/<metric>, e.g. eval/test/overall/mae,
 *                  group with blanks as '_' (focus_F1, count_1-20), step = the
 *                  last counter epoch
 *   configuration  text tag "config": a Markdown table of every root attribute
 */
#ifndef CC_EXPORT_H
#define CC_EXPORT_H

#include <stdio.h>

#include "src/sweep/report.h"

/* One event file per run under dir/<run name>/ (TensorBoard's convention:
 * one run directory per hyper-parameter setting), named
 * events.out.tfevents.<run start time>.<run host>, so exporting the same
 * run again replaces its file (older event files in that directory are
 * removed).  Wall times: the run's start time plus the cumulated epoch
 * seconds.  Writes "wrote PATH" lines to log (may be NULL).  Returns 0, or
 * -1 with st naming the file. */
int export_tensorboard(const cc_report *r, const char *dir, FILE *log, cc_status *st);

/* One long table, written atomically to path, with the header
 *   run,<sweep keys...>,stage,split,group,epoch,metric,value
 * one row per number: metrics rows (stage fpn|counter, group empty, epoch
 * 1-based) and evaluation rows (stage evaluate, group the table row's
 * label, epoch empty).  Missing numbers (NaN) are left out.  Quoting as
 * RFC 4180, so pandas.read_csv(path) takes it as is. */
int export_csv(const cc_report *r, const char *path, cc_status *st);

#endif
