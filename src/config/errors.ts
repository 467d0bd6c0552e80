// The one error type of the config layer: a message for the operator, printed without a stack
// trace, and exit code 2 (usage / configuration error).

export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}
