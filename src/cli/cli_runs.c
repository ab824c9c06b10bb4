/* cli_runs.c - see cli_runs.h. */
#include "src/cli/cli_runs.h"

int cli_runs_main(const cli_runs_cmd *c, int argc, char **argv, void *user)
{
    int first, rc = cli_parse_str_opts(argc, argv, c->opts, c->nopts, "runs", c->usage, &first);
    if (rc >= 0) return rc;
    if (c->need_one) {
        int given = 0;
        for (int i = 0; i < c->nopts; i++) given |= *c->opts[i].value != NULL;
        if (!given) {
            fprintf(stderr, "cellcount %s: nothing to do: %s\n", c->name, c->need_one);
            return 2;
        }
    }
    cc_report r;
    report_init(&r);
    cc_status st;
    status_clear(&st);
    rc = 0;
    for (int i = first; i < argc && !rc; i++) rc = report_add(&r, argv[i], &st);
    if (!rc) rc = c->work(&r, user, &st);
    if (rc) fprintf(stderr, "cellcount %s: %s\n", c->name, st.msg);
    report_free(&r);
    return rc ? 1 : 0;
}
