/* cli.h - the `cellcount` subcommands.
 *
 * Each subcommand is `int cli_<name>(int argc, char **argv)`: argv[0] is the
 * subcommand name, options are parsed with getopt_long, `--help` prints a
 * usage text that is true and returns 0.  Returns the process exit status
 * (0 ok, 1 runtime error, 2 usage error).  Errors go to stderr and name the
 * file and the problem.  Subcommands are listed in main.c's table.
 */
#ifndef CC_CLI_H
#define CC_CLI_H

typedef struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;        /* one line for `cellcount --help` */
} cli_command;

int cli_simulate(int argc, char **argv);
int cli_import(int argc, char **argv);
int cli_summary(int argc, char **argv);
int cli_train_fpn(int argc, char **argv);
int cli_train_counter(int argc, char **argv);
int cli_evaluate(int argc, char **argv);
int cli_sweep(int argc, char **argv);
int cli_report(int argc, char **argv);
int cli_count(int argc, char **argv);
int cli_saliency(int argc, char **argv);
int cli_quickstart(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_export(int argc, char **argv);

#endif
