/* sweep.c - sweep specification: sweep files, --grid/--set, grid expansion.
 * Running the points is in sweep_run.c. */
#include "src/sweep/sweep.h"
#include "src/run/ini_read.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sweep_spec_init(sweep_spec *s)
{
    memset(s, 0, sizeof *s);
}

static void axis_free(sweep_axis *a)
{
    for (int i = 0; i < a->nvalues; i++) free(a->values[i]);
    free(a->values);
    memset(a, 0, sizeof *a);
}

void sweep_spec_free(sweep_spec *s)
{
    for (int a = 0; a < s->naxes; a++) axis_free(&s->axes[a]);
    for (int i = 0; i < s->nsets; i++) free(s->sets[i]);
    memset(s, 0, sizeof *s);
}

/* Copy src without leading/trailing blanks into dst (dst may alias src). */
static void trim_copy(char *dst, const char *src, size_t n)
{
    while (isspace((unsigned char)*src)) src++;
    size_t l = strlen(src);
    while (l && isspace((unsigned char)src[l - 1])) l--;
    if (l >= n) l = n - 1;
    memmove(dst, src, l);
    dst[l] = '\0';
}

/* The sweep itself sets these per point. */
static int key_reserved(const char *key)
{
    return !strcmp(key, "run.out_dir") || !strcmp(key, "run.name") || !strcmp(key, "run.threads");
}

int sweep_override_each(const char *override, int (*fn)(void *arg, const char *assignment),
                        void *arg)
{
    const char *eq = strchr(override, '=');
    if (!eq) return fn(arg, override);
    const char *k = override;
    while (k < eq) {
        const char *plus = memchr(k, '+', (size_t)(eq - k));
        const char *end = plus ? plus : eq;
        char one[CFG_STR + 80];
        snprintf(one, sizeof one, "%.*s%s", (int)(end - k), k, eq);
        int r = fn(arg, one);
        if (r) return r;
        k = end + 1;
    }
    return 0;
}

typedef struct set_arg {
    cc_config *c;
    cc_status *st;
} set_arg;

static int set_one(void *arg, const char *assignment)
{
    set_arg *a = arg;
    return config_set(a->c, assignment, a->st);
}

/* Check "key=value" (keys may be linked with '+') against the
 * configuration's key table.  config_set's messages start with "--set";
 * drop that so `where` (file:line) leads. */
static int check_assignment(const char *assignment, const char *where, cc_status *st)
{
    cc_config scratch;
    config_defaults(&scratch);
    cc_status local;
    status_clear(&local);
    set_arg sa = {&scratch, &local};
    if (sweep_override_each(assignment, set_one, &sa) == 0) return 0;
    const char *m = local.msg;
    if (!strncmp(m, "--set: ", 7))
        m += 7;
    else if (!strncmp(m, "--set ", 6))
        m += 6;
    return status_set(st, "%s: %s", where, m);
}

int sweep_add_grid(sweep_spec *s, const char *assignment, const char *where, cc_status *st)
{
    const char *eq = strchr(assignment, '=');
    char key[64];
    if (!eq || (size_t)(eq - assignment) >= sizeof key)
        return status_set(st, "%s: '%s': expected section.key=value1,value2,...", where,
                          assignment);
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = '\0';
    trim_copy(key, key, sizeof key);
    if (!strchr(key, '.'))
        return status_set(st, "%s: '%s': expected section.key=value1,value2,...", where,
                          assignment);
    for (const char *k = key; k;) {
        const char *plus = strchr(k, '+');
        char one[64];
        snprintf(one, sizeof one, "%.*s", plus ? (int)(plus - k) : (int)strlen(k), k);
        if (key_reserved(one))
            return status_set(st, "%s: %s is set by the sweep itself for every point (use --out, "
                                  "--jobs, --threads)", where, one);
        k = plus ? plus + 1 : NULL;
    }
    sweep_axis a;
    memset(&a, 0, sizeof a);
    snprintf(a.key, sizeof a.key, "%s", key);
    const char *p = eq + 1;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        char value[CFG_STR], probe[CFG_STR + 80];
        if (l >= sizeof value) {
            axis_free(&a);
            return status_set(st, "%s: %s: value too long", where, key);
        }
        memcpy(value, p, l);
        value[l] = '\0';
        trim_copy(value, value, sizeof value);
        if (!value[0]) {
            axis_free(&a);
            return status_set(st, "%s: %s: empty value in '%s'", where, key, eq + 1);
        }
        for (int i = 0; i < a.nvalues; i++)
            if (!strcmp(a.values[i], value)) {
                axis_free(&a);
                return status_set(st, "%s: %s: value '%s' listed twice", where, key, value);
            }
        snprintf(probe, sizeof probe, "%s=%s", key, value);
        if (check_assignment(probe, where, st)) {
            axis_free(&a);
            return -1;
        }
        char **nv = realloc(a.values, sizeof(char *) * (size_t)(a.nvalues + 1));
        char *copy = strdup(value);
        if (nv) a.values = nv;
        if (!nv || !copy) {
            free(copy);
            axis_free(&a);
            return status_set(st, "%s: out of memory", where);
        }
        a.values[a.nvalues++] = copy;
        if (!comma) break;
        p = comma + 1;
    }
    for (int i = 0; i < s->naxes; i++)
        if (!strcmp(s->axes[i].key, key)) {
            /* The command line refines a sweep file: same key, new values. */
            axis_free(&s->axes[i]);
            s->axes[i] = a;
            return 0;
        }
    if (s->naxes == SWEEP_MAX_AXES) {
        axis_free(&a);
        return status_set(st, "%s: more than %d grid keys", where, SWEEP_MAX_AXES);
    }
    s->axes[s->naxes++] = a;
    return 0;
}

int sweep_add_set(sweep_spec *s, const char *assignment, const char *where, cc_status *st)
{
    const char *eq = strchr(assignment, '=');
    char key[64];
    if (!eq || (size_t)(eq - assignment) >= sizeof key)
        return status_set(st, "%s: '%s': expected section.key=value", where, assignment);
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = '\0';
    trim_copy(key, key, sizeof key);
    if (key_reserved(key))
        return status_set(st, "%s: %s is set by the sweep itself for every point (use --out, "
                              "--jobs, --threads)", where, key);
    char buf[CFG_STR + 80];
    char value[CFG_STR];
    trim_copy(value, eq + 1, sizeof value);
    snprintf(buf, sizeof buf, "%s=%s", key, value);
    if (check_assignment(buf, where, st)) return -1;
    if (s->nsets == SWEEP_MAX_SETS)
        return status_set(st, "%s: more than %d fixed overrides", where, SWEEP_MAX_SETS);
    if (!(s->sets[s->nsets] = strdup(buf))) return status_set(st, "%s: out of memory", where);
    s->nsets++;
    return 0;
}

static const struct {
    const char *name;
    unsigned bit;
} stage_names[] = {{"fpn", SWEEP_FPN}, {"counter", SWEEP_COUNTER}, {"evaluate", SWEEP_EVALUATE}};

int sweep_parse_stages(const char *list, unsigned *stages, cc_status *st)
{
    unsigned bits = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        char tok[32];
        if (l >= sizeof tok) l = sizeof tok - 1;
        memcpy(tok, p, l);
        tok[l] = '\0';
        trim_copy(tok, tok, sizeof tok);
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof stage_names / sizeof stage_names[0]; i++)
            if (!strcmp(tok, stage_names[i].name)) bit = stage_names[i].bit;
        if (!bit)
            return status_set(st, "stages: '%s' is not a stage (fpn, counter, evaluate)", tok);
        bits |= bit;
        if (!comma) break;
        p = comma + 1;
    }
    *stages = bits;
    return 0;
}

void sweep_stages_str(unsigned stages, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof stage_names / sizeof stage_names[0]; i++)
        if (stages & stage_names[i].bit) {
            int w = snprintf(buf + o, len - o, "%s%s", o ? "," : "", stage_names[i].name);
            if (w < 0 || (size_t)w >= len - o) break;
            o += (size_t)w;
        }
}

/* Stop at the first section header: is it [sweep]? */
static int is_sweep_handler(void *user, const char *where, const char *section, const char *name,
                            const char *value, cc_status *st)
{
    (void)where; (void)name; (void)value;
    *(int *)user = !strcmp(section, "sweep");
    return status_set(st, "stop");
}

int sweep_file_is_sweep(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int found = 0;
    ini_read(f, path, is_sweep_handler, &found, NULL);
    fclose(f);
    return found;
}

typedef struct sweep_parse {
    sweep_spec *s;
    const char *path;
} sweep_parse;

static int sweep_ini_handler(void *user, const char *where, const char *section,
                             const char *name, const char *value, cc_status *st)
{
    sweep_parse *p = user;
    char buf[CFG_STR * 2];
    if (strcmp(section, "sweep"))
        return status_set(st, "%s: unknown section [%s] (a sweep file has only [sweep])", where,
                          section);
    if (!name) return 0;
    if (!strcmp(name, "base") || !strcmp(name, "out_dir")) {
        /* a cut path would name another file: refuse it */
        size_t dirlen = value[0] && value[0] != '/' && strchr(p->path, '/')
                            ? (size_t)(strrchr(p->path, '/') - p->path) + 1 : 0;
        if ((name[0] == 'b' ? dirlen : 0) + strlen(value) >= sizeof p->s->base)
            return status_set(st, "%s: %s: path longer than %zu characters", where, name,
                              sizeof p->s->base - 1);
    }
    if (!strcmp(name, "base")) {
        if (!value[0] || value[0] == '/' || !strchr(p->path, '/')) {
            snprintf(p->s->base, sizeof p->s->base, "%s", value);
        } else {
            /* Relative to the sweep file, like an include. */
            const char *slash = strrchr(p->path, '/');
            snprintf(p->s->base, sizeof p->s->base, "%.*s/%s", (int)(slash - p->path), p->path,
                     value);
        }
        return 0;
    }
    if (!strcmp(name, "out_dir")) {
        snprintf(p->s->out_dir, sizeof p->s->out_dir, "%s", value);
        return 0;
    }
    if (!strcmp(name, "mode")) {
        if (!strcmp(value, "grid") || !strcmp(value, "ablation")) {
            p->s->ablation = !strcmp(value, "ablation");
            return 0;
        }
        return status_set(st, "%s: mode = '%s' (expected grid or ablation)", where, value);
    }
    if (!strcmp(name, "stages")) {
        cc_status local;
        status_clear(&local);
        if (sweep_parse_stages(value, &p->s->stages, &local))
            return status_set(st, "%s: %s", where, local.msg);
        return 0;
    }
    int grid = !strncmp(name, "grid.", 5), set = !strncmp(name, "set.", 4);
    if (grid || set) {
        if (strlen(name) + strlen(value) + 1 >= sizeof buf)
            return status_set(st, "%s: %s: value too long", where, name);
        snprintf(buf, sizeof buf, "%s=%s", name + (grid ? 5 : 4), value);
        int r = grid ? sweep_add_grid(p->s, buf, where, st) : sweep_add_set(p->s, buf, where, st);
        return r;
    }
    return status_set(st, "%s: unknown key '%s' in [sweep] (expected base, out_dir, stages, "
                          "mode, grid.SECTION.KEY or set.SECTION.KEY)", where, name);
}

int sweep_load(sweep_spec *s, const char *path, cc_status *st)
{
    sweep_parse p = {s, path};
    FILE *f = fopen(path, "r");
    if (!f) return status_set(st, "%s: cannot open sweep file (%s)", path, strerror(errno));
    int r = ini_read(f, path, sweep_ini_handler, &p, st);
    fclose(f);
    return r;
}

const char *sweep_point_override(const sweep_spec *s, const sweep_point *p, int a, char *buf,
                                 size_t len)
{
    if (p->idx[a] < 0) return NULL;
    snprintf(buf, len, "%s=%s", s->axes[a].key, s->axes[a].values[p->idx[a]]);
    return buf;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Directory name of a point: its overrides, made safe for any file system
 * and shell, short enough for NAME_MAX. */
static void point_name(const sweep_spec *s, sweep_point *p)
{
    char raw[SWEEP_MAX_AXES * (CFG_STR + 80)];
    size_t o = 0;
    raw[0] = '\0';
    for (int a = 0; a < s->naxes; a++) {
        char ov[CFG_STR + 80];
        if (!sweep_point_override(s, p, a, ov, sizeof ov)) continue;
        int w = snprintf(raw + o, sizeof raw - o, "%s%s", o ? "," : "", ov);
        if (w < 0 || (size_t)w >= sizeof raw - o) break;
        o += (size_t)w;
    }
    if (!o) snprintf(raw, sizeof raw, "base");
    size_t n = 0;
    for (const char *c = raw; *c && n < SWEEP_NAME - 1; c++)
        p->name[n++] = (isalnum((unsigned char)*c) || strchr("._=,+-", *c)) ? *c : '_';
    p->name[n] = '\0';
    if (strlen(raw) > SWEEP_NAME - 1)
        snprintf(p->name + SWEEP_NAME - 11, 11, "~%08x", (unsigned)fnv1a(raw));
}

/* The point's full configuration, to reject bad combinations up front;
 * with `text`, also its resolved configuration as written to config.ini
 * (malloc'ed, without run.* which differ per point by design). */
static int point_check(const sweep_spec *s, const sweep_point *p, char **text, cc_status *st)
{
    cc_config c;
    config_defaults(&c);
    if (s->base[0] && config_load(&c, s->base, st)) return -1;
    for (int i = 0; i < s->nsets; i++)
        if (config_set(&c, s->sets[i], st)) return -1;
    for (int a = 0; a < s->naxes; a++) {
        char ov[CFG_STR + 80];
        set_arg sa = {&c, st};
        if (sweep_point_override(s, p, a, ov, sizeof ov) && sweep_override_each(ov, set_one, &sa))
            return -1;
    }
    if (snprintf(c.out_dir, sizeof c.out_dir, "%s", p->dir) >= (int)sizeof c.out_dir)
        return status_set(st, "%s: run directory name too long", p->dir);
    if (config_validate(&c, st)) {
        status_prefix(st, "point %s: ", p->name);
        return -1;
    }
    if (text) {
        c.out_dir[0] = c.name[0] = '\0';
        size_t len = 0;
        FILE *f = open_memstream(text, &len);
        if (!f) return status_set(st, "sweep: out of memory");
        config_write(&c, f);
        if (fclose(f)) return status_set(st, "sweep: out of memory");
    }
    return 0;
}

/* The ablation points: base, then every axis value alone. */
static long ablation_points(const sweep_spec *s, sweep_point *P)
{
    long n = 0;
    for (int a = 0; a < s->naxes; a++) P[0].idx[a] = -1;
    n++;
    for (int a = 0; a < s->naxes; a++)
        for (int v = 0; v < s->axes[a].nvalues; v++, n++) {
            for (int b = 0; b < s->naxes; b++) P[n].idx[b] = -1;
            P[n].idx[a] = v;
        }
    return n;
}

int sweep_expand(const sweep_spec *s, sweep_point **points, int *npoints, cc_status *st)
{
    *points = NULL;
    *npoints = 0;
    if (s->naxes == 0) return status_set(st, "no grid keys (--grid SEC.KEY=A,B or grid.SEC.KEY = A,B)");
    if (!s->out_dir[0]) return status_set(st, "no output directory (--out DIR or out_dir = DIR)");
    long total = 1;
    for (int a = 0; a < s->naxes; a++) {
        total = s->ablation ? total + s->axes[a].nvalues : total * s->axes[a].nvalues;
        if (total > SWEEP_MAX_POINTS)
            return status_set(st, "more than %d points", SWEEP_MAX_POINTS);
    }
    sweep_point *P = calloc((size_t)total, sizeof *P);
    char **text = calloc((size_t)total, sizeof *text);
    if (!P || !text) {
        free(P);
        free(text);
        return status_set(st, "sweep: out of memory");
    }
    if (s->ablation)
        ablation_points(s, P);
    else
        for (long i = 0; i < total; i++) {
            /* Mixed-radix digits of i, the last axis varying fastest. */
            long r = i;
            for (int a = s->naxes - 1; a >= 0; a--) {
                P[i].idx[a] = (int)(r % s->axes[a].nvalues);
                r /= s->axes[a].nvalues;
            }
        }
    long n = 0;                 /* points kept */
    int rc = 0;
    for (long i = 0; i < total && !rc; i++) {
        sweep_point *q = &P[n];
        if (n != i) *q = P[i];
        point_name(s, q);
        if (snprintf(q->dir, sizeof q->dir, "%s/%s", s->out_dir, q->name) >= (int)sizeof q->dir) {
            rc = status_set(st, "%s/%s: run directory name too long", s->out_dir, q->name);
            break;
        }
        for (long j = 0; j < n && !rc; j++)
            if (!strcmp(q->name, P[j].name))
                rc = status_set(st, "two points map to the same directory name '%s' (values "
                                    "that differ only in characters replaced by '_')", q->name);
        if (rc || point_check(s, q, s->ablation ? &text[n] : NULL, st)) {
            rc = -1;
            break;
        }
        int dup = 0;
        for (long j = 0; j < n && s->ablation && !dup; j++) dup = !strcmp(text[j], text[n]);
        if (dup) {
            free(text[n]);
            text[n] = NULL;
        } else {
            n++;
        }
    }
    for (long i = 0; i < total; i++) free(text[i]);
    free(text);
    if (rc) {
        free(P);
        return -1;
    }
    *points = P;
    *npoints = (int)n;
    return 0;
}
