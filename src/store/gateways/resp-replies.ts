// The RESP gateway's fixed reply texts, encoded once with src/core/resp's encoders. Kept word for
// word as Redis 7 writes them: redis-py and LMCache's C++ client match on some of them (NOAUTH,
// WRONGPASS), and people search for the others.

import { errorReply } from "../../core/resp/codec.ts";
import { errorName } from "../../core/errors.ts";

export const NOAUTH = errorReply("NOAUTH Authentication required.");
export const WRONGPASS = errorReply("WRONGPASS invalid username-password pair or user is disabled.");
export const NO_PASSWORD_SET = errorReply(
  "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
);
export const NOT_AN_INTEGER = errorReply("ERR value is not an integer or out of range");

export const wrongArgs = (name: string) => errorReply(`ERR wrong number of arguments for '${name}' command`);

/** A store call that failed, with Mooncake's error name and code. */
export const storeError = (what: string, code: number) => errorReply(`ERR mooncake ${what} failed: ${errorName(code)} (${code})`);

const decoder = new TextDecoder();

/** Redis's text, with the name and the first arguments cut short so a huge command cannot make a huge reply. */
export function unknownCommand(args: Uint8Array[]): Uint8Array {
  const shown = decoder.decode(args[0]).slice(0, 128);
  const rest = args
    .slice(1, 4)
    .map((a) => `'${decoder.decode(a).slice(0, 64)}'`)
    .join(" ");
  return errorReply(`ERR unknown command '${shown}', with args beginning with: ${rest}`);
}

/** What a command that threw answers (the connection goes on). */
export const internalError = (error: unknown) => errorReply(`ERR ${(error as Error).message}`);

/** A protocol error, answered before the connection closes (as Redis does). */
export const protocolError = (message: string) => errorReply(`ERR ${message}`);
