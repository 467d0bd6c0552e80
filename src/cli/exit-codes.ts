// Exit codes of every mooncake command, documented in `mooncake --help` and docs/OPERATIONS.md.

export const EXIT = {
  /** Success; for `kv exists`, the key exists. */
  OK: 0,
  /** The command ran and failed (an RPC error, a missing key for `kv get`…). */
  FAILURE: 1,
  /** Bad usage or configuration: unknown flag, bad value, broken config file, missing required key. */
  USAGE: 2,
  /** The master (or another service the command needs) did not answer in time. */
  UNREACHABLE: 3,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  the command failed (see the message)
  2  bad usage or configuration (unknown flag, bad value, broken config file)
  3  the master or a service it needs did not answer in time`;
