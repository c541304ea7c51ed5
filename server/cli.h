/* cli.h - `ditserve` subcommands other than the server itself. Each returns the process exit code:
 * 0 success, 1 runtime failure (message on stderr), 2 bad arguments (one-line error on stderr). */
#ifndef DS_CLI_H
#define DS_CLI_H

/* `ditserve generate --model DIR ... --out PNG`: one generation on the CPU backend, written as PNG with
 * the generation parameters in a tEXt chunk. argv[0] is "generate". */
int ds_cli_generate(int argc, char **argv);

#endif /* DS_CLI_H */
