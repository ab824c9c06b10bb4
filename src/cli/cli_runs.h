/* cli_runs.h - the one driver of the commands that read run files
 * (`report`, `export`): string-valued options and -h/--help
 * (cli_parse_str_opts), then RUN... (a run file, a run directory or a sweep
 * directory: report_add), read into one cc_report that the command's work
 * function then uses. */
#ifndef CC_CLI_RUNS_H
#define CC_CLI_RUNS_H

#include <stdio.h>

#include "src/cli/cli_opts.h"
#include "src/sweep/report.h"

typedef struct cli_runs_cmd {
    const char *name;           /* the command: messages read "cellcount <name>: ..." */
    void (*usage)(FILE *f);
    const cli_str_opt *opts;    /* its options (each value NULL unless given) */
    int nopts;
    /* Non-NULL: at least one option is needed, else "nothing to do: <need_one>"
     * and exit status 2 before any run is read. */
    const char *need_one;
    /* The command's work on the runs read (user: cli_runs_main's); returns 0,
     * or -1 with st set. */
    int (*work)(cc_report *r, void *user, cc_status *st);
} cli_runs_cmd;

/* Parse argv (argv[0]: the command), read every RUN, run c->work and free
 * the runs.  Returns the exit status: 0, 1 (a run unreadable or work
 * failed: "cellcount <name>: <message>" on stderr) or 2 (usage error). */
int cli_runs_main(const cli_runs_cmd *c, int argc, char **argv, void *user);

#endif
