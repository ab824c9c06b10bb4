/* cli_saliency.c - `cellcount saliency` (options: cli_count.c). */
#include "src/cli/cli.h"
#include "src/cli/cli_infer.h"

#include <stdio.h>

#include "src/infer/saliency.h"

int cli_saliency(int argc, char **argv)
{
    infer_opts o;
    int r = infer_parse(argc, argv, INFER_SALIENCY, &o);
    if (r) return r < 0 ? 0 : r;
    count_read rd = {o.normalize, o.page, o.channel};
    saliency_opts so = {o.fpn, o.counter, o.out_h5, o.png_dir, o.batch, o.h, o.w, &rd};
    cc_status st;
    status_clear(&st);
    int rc = saliency_run(&o.cfg, &so, o.inputs, o.ninputs, stdout, stderr, &st);
    if (rc < 0) fprintf(stderr, "cellcount %s: %s\n", argv[0], st.msg);
    if (rc > 0) fprintf(stderr, "cellcount %s: some inputs were skipped (see above)\n", argv[0]);
    return rc ? 1 : 0;
}
