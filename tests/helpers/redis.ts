// A real redis-server for tests on 127.0.0.1 and a free port, without persistence (`--save ''
// --appendonly no`, working dir in a temp dir that stop() removes). `command()` is a minimal RESP2
// client on a fresh socket, independent of the ioredis client under test, so a test reads exactly
// the bytes the server holds. (tests/integration/bench-data.test.ts has its own older starter.)

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "./etcd.ts";
import { type Started, start } from "./process.ts";
import { waitUntil } from "./wait.ts";

export type RespValue = string | number | null | Uint8Array | RespValue[] | Error;

export interface RedisServer {
  port: number;
  /** `redis://127.0.0.1:<port>` */
  url: string;
  process: Started;
  /** One command on a fresh connection (AUTH first when the server has a password). Bulk strings
   * come back as Uint8Array, errors as Error values. */
  command(...args: string[]): Promise<RespValue>;
  /** Several commands on one connection (e.g. SELECT then GET); the last one's reply. */
  commands(...cmds: string[][]): Promise<RespValue>;
  kill(): Promise<void>;
  /** Kill and remove the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** Parses one RESP2 reply at `at`; null when `buf` does not hold all of it yet. */
function parseReply(buf: Uint8Array, at: number): { value: RespValue; end: number } | null {
  const lineEnd = buf.indexOf(13, at);
  if (lineEnd < 0 || lineEnd + 1 >= buf.length) return null;
  const line = new TextDecoder().decode(buf.subarray(at + 1, lineEnd));
  const next = lineEnd + 2;
  switch (buf[at]) {
    case 43: // +
      return { value: line, end: next };
    case 45: // -
      return { value: new Error(line), end: next };
    case 58: // :
      return { value: Number(line), end: next };
    case 36: {
      // $
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.slice(next, next + n), end: next + n + 2 };
    }
    case 42: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const item = parseReply(buf, pos);
        if (!item) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`unexpected RESP reply byte ${buf[at]}`);
  }
}

function encodeCommand(args: string[]): Uint8Array {
  const enc = new TextEncoder();
  const parts = args.map((a) => enc.encode(a));
  let head = `*${parts.length}\r\n`;
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    chunks.push(enc.encode(`${head}$${p.length}\r\n`), p);
    head = "\r\n";
  }
  chunks.push(enc.encode("\r\n"));
  return Buffer.concat(chunks);
}

/** Sends `commands` in one go on a fresh connection and resolves with the last reply. */
export async function respCall(port: number, commands: string[][], timeoutMs = 5000): Promise<RespValue> {
  return await new Promise<RespValue>((resolve, reject) => {
    let buf = new Uint8Array(0);
    const replies: RespValue[] = [];
    const timer = setTimeout(() => reject(new Error(`redis on port ${port}: no reply within ${timeoutMs} ms`)), timeoutMs);
    const done = (f: () => void) => {
      clearTimeout(timer);
      f();
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.write(Buffer.concat(commands.map(encodeCommand)));
        },
        data(s, chunk) {
          buf = Buffer.concat([buf, chunk]);
          let at = 0;
          for (;;) {
            const r = parseReply(buf, at);
            if (!r) break;
            replies.push(r.value);
            at = r.end;
          }
          buf = buf.slice(at);
          if (replies.length === commands.length) {
            s.end();
            done(() => resolve(replies[replies.length - 1]!));
          }
        },
        error(_s, e) {
          done(() => reject(e));
        },
        connectError(_s, e) {
          done(() => reject(e));
        },
      },
    }).catch((e: unknown) => done(() => reject(e)));
  });
}

/** Starts redis-server; `password` sets `--requirepass`, `port` reuses a port (a restart).
 * Resolves once it answers PING. */
export async function startRedis(options: { password?: string; port?: number; timeoutMs?: number } = {}): Promise<RedisServer> {
  const bin = Bun.which("redis-server");
  if (!bin) throw new Error("redis-server is required for this test: apt-get install -y redis-server");
  const port = options.port ?? (await freePorts(1))[0]!;
  const dir = mkdtempSync(join(tmpdir(), "mooncake-redis-"));
  const args = [bin, "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"];
  if (options.password) args.push("--requirepass", options.password);
  const started = start(args);
  let removed = false;
  const kill = async () => {
    started.kill();
    await started.proc.exited;
  };
  const stop = async () => {
    await kill();
    if (!removed) rmSync(dir, { recursive: true, force: true });
    removed = true;
  };
  const commands = (...cmds: string[][]) => respCall(port, options.password ? [["AUTH", options.password], ...cmds] : cmds);
  const command = (...cmd: string[]) => commands(cmd);
  try {
    await waitUntil(
      `redis-server on port ${port} to answer PING`,
      async () => {
        if (started.proc.exitCode !== null) throw new Error(`redis-server exited with ${started.proc.exitCode}: ${started.stderr()}`);
        return (await command("PING").catch(() => null)) === "PONG";
      },
      { timeoutMs: options.timeoutMs ?? 10_000, everyMs: 20 },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, url: `redis://127.0.0.1:${port}`, process: started, command, commands, kill, stop };
}
