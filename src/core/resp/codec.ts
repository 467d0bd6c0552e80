// RESP (Redis serialization protocol) for a server: a streaming, bounded parser for client
// commands (arrays of bulk strings, and inline commands as redis-cli sends them when typed raw),
// and reply encoders for RESP2 and RESP3. Runtime-neutral: no Bun or Node APIs.
//
// Bounds: a bulk longer than maxBulkBytes, an array longer than maxArrayLength, a command whose
// declared bulks add up to more than maxPendingBytes, or an inline line longer than
// maxInlineBytes is a RespProtocolError; the server replies with it and closes the connection
// (as Redis does: the stream can no longer be trusted).

export class RespProtocolError extends Error {
  override name = "RespProtocolError";
}

export interface RespParserLimits {
  /** Largest bulk string (default 512 MiB, Redis's proto-max-bulk-len). */
  maxBulkBytes?: number;
  /** Most arguments in one command (default 1M, as Redis). */
  maxArrayLength?: number;
  /** Most bytes of bulk data one command may declare in total (default maxBulkBytes + 1 MiB). */
  maxPendingBytes?: number;
  /** Longest inline command or header line (default 64 KiB, as Redis). */
  maxInlineBytes?: number;
  /** Where a bulk argument's bytes go (default: a new Uint8Array; a gateway passes its BufferPool). */
  allocate?: (sizeBytes: number) => Uint8Array;
}

const CR = 13;
const LF = 10;
const TAB = 9;
const SPACE = 0x20;
const DQUOTE = 0x22;
const SQUOTE = 0x27;
const BACKSLASH = 0x5c;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Feed chunks in; complete commands come out (each an array of arguments, a bulk's bytes in one
 * Uint8Array). Never holds more than one incomplete command.
 */
export class RespParser {
  readonly maxBulkBytes: number;
  readonly maxArrayLength: number;
  readonly maxPendingBytes: number;
  readonly maxInlineBytes: number;
  /** Bytes of an incomplete header or inline line. */
  private line: Uint8Array[] = [];
  private lineBytes = 0;
  /** The command being assembled: arguments still expected, and those done. */
  private argsLeft = -1;
  private args: Uint8Array[] = [];
  private declared = 0;
  /** Bulk body in progress: the buffer, how much is filled; then 2 bytes of CRLF. */
  private bulk: Uint8Array | null = null;
  private bulkFilled = 0;
  private crlfLeft = 0;
  private failed: RespProtocolError | null = null;
  private readonly allocate: (sizeBytes: number) => Uint8Array;

  constructor(limits: RespParserLimits = {}) {
    this.allocate = limits.allocate ?? ((sizeBytes) => new Uint8Array(sizeBytes));
    this.maxBulkBytes = limits.maxBulkBytes ?? 512 * 1024 * 1024;
    this.maxArrayLength = limits.maxArrayLength ?? 1024 * 1024;
    this.maxPendingBytes = limits.maxPendingBytes ?? this.maxBulkBytes + 1024 * 1024;
    this.maxInlineBytes = limits.maxInlineBytes ?? 64 * 1024;
  }

  /** True while part of a command has been received. */
  get midCommand(): boolean {
    return this.argsLeft >= 0 || this.lineBytes > 0 || this.bulk !== null;
  }

  /** Parses `chunk`; returns the commands it completed. Throws RespProtocolError (and keeps throwing). */
  feed(chunk: Uint8Array): Uint8Array[][] {
    if (this.failed) throw this.failed;
    try {
      return this.parse(chunk);
    } catch (e) {
      if (e instanceof RespProtocolError) this.failed = e;
      throw e;
    }
  }

  private parse(chunk: Uint8Array): Uint8Array[][] {
    const out: Uint8Array[][] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.bulk !== null) {
        const take = Math.min(this.bulk.length - this.bulkFilled, n - i);
        this.bulk.set(chunk.subarray(i, i + take), this.bulkFilled);
        this.bulkFilled += take;
        i += take;
        if (this.bulkFilled < this.bulk.length) break;
        this.args.push(this.bulk);
        this.bulk = null;
        this.crlfLeft = 2;
        continue;
      }
      if (this.crlfLeft > 0) {
        const want = this.crlfLeft === 2 ? CR : LF;
        if (chunk[i] !== want) throw new RespProtocolError("Protocol error: expected CRLF after bulk data");
        i++;
        this.crlfLeft--;
        if (this.crlfLeft === 0) this.argDone(out);
        continue;
      }
      // A line: header (*N, $N) or an inline command.
      const lf = chunk.indexOf(LF, i);
      const end = lf < 0 ? n : lf;
      if (this.lineBytes + (end - i) > this.maxInlineBytes) {
        throw new RespProtocolError(
          this.argsLeft < 0 ? "Protocol error: too big inline request" : "Protocol error: too big mbulk count string",
        );
      }
      if (lf < 0) {
        if (end > i) {
          this.line.push(chunk.slice(i, end));
          this.lineBytes += end - i;
        }
        break;
      }
      let line: Uint8Array;
      if (this.lineBytes === 0) line = chunk.subarray(i, lf);
      else {
        this.line.push(chunk.subarray(i, lf));
        line = concat(this.line, this.lineBytes + (lf - i));
      }
      this.line = [];
      this.lineBytes = 0;
      i = lf + 1;
      if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
      this.onLine(line, out);
    }
    return out;
  }

  private onLine(line: Uint8Array, out: Uint8Array[][]) {
    if (this.argsLeft < 0) {
      if (line[0] !== 0x2a /* * */) {
        const args = splitInline(line);
        // maxArrayLength bounds every command, inline ones too (their line bounds them only loosely).
        if (args.length > this.maxArrayLength) throw new RespProtocolError("Protocol error: too many arguments in inline request");
        if (args.length > 0) out.push(args);
        return;
      }
      const count = parseLength(line, "multibulk");
      if (count > this.maxArrayLength) throw new RespProtocolError("Protocol error: invalid multibulk length");
      if (count <= 0) return; // *0 / *-1: nothing to run, as Redis
      this.argsLeft = count;
      this.args = [];
      this.declared = 0;
      return;
    }
    if (line[0] !== 0x24 /* $ */) {
      const got = line.length === 0 ? "" : String.fromCharCode(line[0]!);
      throw new RespProtocolError(`Protocol error: expected '$', got '${got}'`);
    }
    const len = parseLength(line, "bulk");
    if (len < 0 || len > this.maxBulkBytes) throw new RespProtocolError("Protocol error: invalid bulk length");
    this.declared += len;
    if (this.declared > this.maxPendingBytes) throw new RespProtocolError("Protocol error: command too large");
    this.bulk = this.allocate(len);
    this.bulkFilled = 0;
    if (len === 0) {
      this.args.push(this.bulk);
      this.bulk = null;
      this.crlfLeft = 2;
    }
  }

  private argDone(out: Uint8Array[][]) {
    this.argsLeft--;
    if (this.argsLeft === 0) {
      out.push(this.args);
      this.args = [];
      this.argsLeft = -1;
      this.declared = 0;
    }
  }
}

function parseLength(line: Uint8Array, what: string): number {
  const text = decoder.decode(line.subarray(1));
  if (!/^-?\d{1,18}$/.test(text)) throw new RespProtocolError(`Protocol error: invalid ${what} length`);
  return Number(text);
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Splits an inline command on spaces/tabs, honouring "double" and 'single' quotes (as Redis's
 * sdssplitargs, simplified). Works on bytes, as Redis does: an argument keeps its bytes whether or
 * not they are UTF-8 (decoding to text first turned each invalid byte into the 3 bytes of U+FFFD).
 */
export function splitInline(line: Uint8Array): Uint8Array[] {
  const args: Uint8Array[] = [];
  let cur: number[] = [];
  let inArg = false;
  let quote = 0;
  for (let k = 0; k < line.length; k++) {
    const c = line[k]!;
    if (quote) {
      if (c === BACKSLASH && quote === DQUOTE && k + 1 < line.length) {
        const nx = line[++k]!;
        cur.push(nx === 0x6e /* n */ ? LF : nx === 0x72 /* r */ ? CR : nx === 0x74 /* t */ ? TAB : nx);
      } else if (c === quote) quote = 0;
      else cur.push(c);
    } else if (c === SPACE || c === TAB) {
      if (inArg) args.push(Uint8Array.from(cur));
      cur = [];
      inArg = false;
    } else if ((c === DQUOTE || c === SQUOTE) && !inArg) {
      quote = c;
      inArg = true;
    } else {
      cur.push(c);
      inArg = true;
    }
  }
  if (quote) throw new RespProtocolError("Protocol error: unbalanced quotes in request");
  if (inArg) args.push(Uint8Array.from(cur));
  return args;
}

// ---- encoders ---------------------------------------------------------------------------------

export const OK = encoder.encode("+OK\r\n");
export const NULL_BULK = encoder.encode("$-1\r\n");
export const NULL_ARRAY = encoder.encode("*-1\r\n");
export const NULL_RESP3 = encoder.encode("_\r\n");
export const CRLF_BYTES = encoder.encode("\r\n");

/** Strips CR/LF so a message cannot break the framing. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, " ");
}

export function simpleString(s: string): Uint8Array {
  return encoder.encode(`+${oneLine(s)}\r\n`);
}

/** An error reply; `message` starts with its code ("ERR …", "NOAUTH …"). */
export function errorReply(message: string): Uint8Array {
  return encoder.encode(`-${oneLine(message)}\r\n`);
}

export function integer(n: number): Uint8Array {
  return encoder.encode(`:${Math.trunc(n)}\r\n`);
}

/** Header of a bulk string of `length` bytes; the body and CRLF follow. */
export function bulkHeader(length: number): Uint8Array {
  return encoder.encode(`$${length}\r\n`);
}

/** A whole bulk string (copies; use bulkHeader + body + CRLF_BYTES for large values). */
export function bulk(value: Uint8Array | string | null, resp3 = false): Uint8Array {
  if (value === null) return resp3 ? NULL_RESP3 : NULL_BULK;
  const body = typeof value === "string" ? encoder.encode(value) : value;
  const head = bulkHeader(body.length);
  return concat([head, body, CRLF_BYTES], head.length + body.length + 2);
}

export function nullReply(resp3: boolean): Uint8Array {
  return resp3 ? NULL_RESP3 : NULL_BULK;
}

/** A bulk string as parts to write in turn: the value is kept by reference, never copied. */
export function bulkParts(value: Uint8Array | null, resp3 = false): Uint8Array[] {
  return value === null ? [nullReply(resp3)] : [bulkHeader(value.length), value, CRLF_BYTES];
}

export function arrayHeader(count: number): Uint8Array {
  return encoder.encode(`*${count}\r\n`);
}

/** A reply value for the structured encoders. */
export type RespValue =
  | { simple: string }
  | { error: string }
  | number
  | string
  | Uint8Array
  | null
  | RespValue[]
  | { map: [RespValue, RespValue][] };

/** Encodes a structured reply; maps become flat arrays and nulls `$-1` unless `resp3`. */
export function encode(value: RespValue, resp3 = false): Uint8Array {
  const parts: Uint8Array[] = [];
  const walk = (v: RespValue) => {
    if (v === null) parts.push(nullReply(resp3));
    else if (typeof v === "number") parts.push(integer(v));
    else if (typeof v === "string" || v instanceof Uint8Array) parts.push(bulk(v));
    else if (Array.isArray(v)) {
      parts.push(arrayHeader(v.length));
      for (const x of v) walk(x);
    } else if ("simple" in v) parts.push(simpleString(v.simple));
    else if ("error" in v) parts.push(errorReply(v.error));
    else {
      parts.push(encoder.encode(resp3 ? `%${v.map.length}\r\n` : `*${v.map.length * 2}\r\n`));
      for (const [k, x] of v.map) {
        walk(k);
        walk(x);
      }
    }
  };
  walk(value);
  return concat(parts, parts.reduce((t, p) => t + p.length, 0));
}
