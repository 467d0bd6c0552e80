// The LMCache server protocol gateway of a store node (`mooncake store --lm-port`): a Python
// client that packs headers with `struct` exactly as LMCache's lm_connector / protocol.py do, and
// raw sockets for bad input. Also: the examples/lmcache/*.yaml files load without warnings.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { connect } from "node:net";
import { encodeRequest } from "../../src/core/lm/protocol.ts";
import { type TestCluster, type TestNode, startCluster } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, ROOT, run } from "../helpers/process.ts";
import { tcpQueues, waitUntil } from "../helpers/wait.ts";

let cluster: TestCluster;
let node: TestNode;
let port = 0;
const MiB = 1024 * 1024;
const PYTHON = "/usr/bin/python3";

// LMCache's ClientMetaMessage / ServerMetaMessage (lmcache/v1/protocol.py), verbatim formats.
const PY_CLIENT = `
import os, socket, struct, sys
MAX_KEY_LENGTH = 150
PUT, GET, EXIST, LIST, HEALTH = 1, 2, 3, 4, 5
def client_meta(command, key, length, fmt, dtype, shape, location=0):
    assert len(key) <= MAX_KEY_LENGTH
    return struct.pack(f"iiiiiiiii{MAX_KEY_LENGTH}s", command, length, fmt, dtype, location,
                       shape[0], shape[1], shape[2], shape[3], key.encode().ljust(MAX_KEY_LENGTH))
def recv_exact(s, n):
    buf = bytearray(n); view = memoryview(buf); got = 0
    while got < n:
        r = s.recv_into(view[got:], n - got)
        if r == 0: raise EOFError("server closed after %d of %d bytes" % (got, n))
        got += r
    return bytes(buf)
def server_meta(s):
    return struct.unpack("iiiiiiiii", recv_exact(s, 36))  # code, length, fmt, dtype, s0..s3, location
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
key = "vllm@meta-llama/Llama-3.1-8B@1@0@" + "9f86d081884c7d65" * 4
assert len(key) <= 150
# 32 MiB KV chunk: bfloat16 (3), KV_2LTD (1), shape [32, 2, 256, 1024] bytes = 32*2*256*1024*2
payload = os.urandom(32 * 2 * 256 * 1024 * 2)
assert len(payload) == 32 * 1024 * 1024
# PUT: header and payload under one lock, no reply.
s.sendall(client_meta(PUT, key, len(payload), 1, 3, (32, 2, 256, 1024)))
s.sendall(payload)
# EXIST, GET as the connector sends them (fmt 1, dtype float16 = 2, shape 0s).
s.sendall(client_meta(EXIST, key, 0, 1, 2, (0, 0, 0, 0)))
assert server_meta(s)[0] == 200, "exist"
s.sendall(client_meta(GET, key, 0, 1, 2, (0, 0, 0, 0)))
code, length, fmt, dtype, s0, s1, s2, s3, location = server_meta(s)
assert (code, length, fmt, dtype, (s0, s1, s2, s3), location) == (200, len(payload), 1, 3, (32, 2, 256, 1024), 0), (code, length, fmt, dtype, s0, s1, s2, s3, location)
assert recv_exact(s, length) == payload, "payload differs"
# HEALTH, miss, EXIST of a missing key, LIST (empty).
s.sendall(client_meta(HEALTH, "", 0, 1, 2, (0, 0, 0, 0)))
assert server_meta(s)[0] == 200, "health"
s.sendall(client_meta(GET, "vllm@nothing@1@0@00", 0, 1, 2, (0, 0, 0, 0)))
assert server_meta(s) == (400, 0, 1, 2, 0, 0, 0, 0, 0), "miss"
s.sendall(client_meta(EXIST, "vllm@nothing@1@0@00", 0, 1, 2, (0, 0, 0, 0)))
assert server_meta(s)[0] == 400, "exist miss"
s.sendall(client_meta(LIST, "", 0, 1, 2, (0, 0, 0, 0)))
assert server_meta(s)[:2] == (200, 0), "list"
# A second connection sees the value (another LMCache worker).
t = socket.create_connection(("127.0.0.1", port))
t.sendall(client_meta(GET, key, 0, 1, 2, (0, 0, 0, 0)))
meta = server_meta(t)
assert meta[0] == 200 and recv_exact(t, meta[1]) == payload
print("ok")
`;

/**
 * Sends raw bytes and collects what comes back until the server closes, `want` bytes have come
 * (then it hangs up), or `ms` passes. `end`: half-close (FIN) right after the bytes, so the
 * gateway reads all of them before it sees the client go. `localPort` names the connection in the
 * gateway's log ("lm 127.0.0.1:<localPort>: …").
 */
function raw(
  bytes: Uint8Array,
  options: { ms?: number; end?: boolean; want?: number } = {},
): Promise<{ bytes: Uint8Array; closed: boolean; localPort: number }> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    const got: Buffer[] = [];
    let received = 0;
    let closed = false;
    let localPort = 0;
    const done = () => {
      clearTimeout(timer);
      resolve({ bytes: new Uint8Array(Buffer.concat(got)), closed, localPort });
    };
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, options.ms ?? 5000);
    s.on("connect", () => {
      localPort = s.localPort ?? 0;
    });
    s.on("data", (d: Buffer) => {
      got.push(d);
      received += d.length;
      if (options.want !== undefined && received >= options.want) {
        s.destroy();
        done();
      }
    });
    s.on("close", () => {
      closed = true;
      done();
    });
    s.on("error", () => {});
    s.write(bytes, () => {
      if (options.end) s.end();
    });
  });
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Resolves once the gateway has logged that the client on `localPort` left mid-request. */
const closedMidRequest = (localPort: number) =>
  node.process.waitFor(new RegExp(`lm 127\\.0\\.0\\.1:${localPort}: closed mid-request; the partial request is dropped`));

const req = (command: number, key: string, length = 0, shape: [number, number, number, number] = [0, 0, 0, 0]) =>
  encodeRequest({ command, length, fmt: 1, dtype: 2, shape, key });
const codeOf = (b: Uint8Array, at = 0) => new DataView(b.buffer, b.byteOffset).getInt32(at, true);

async function exists(key: string): Promise<number> {
  const r = await raw(req(3, key), { want: 36 });
  expect(r.bytes.length).toBe(36);
  return codeOf(r.bytes);
}

beforeAll(async () => {
  if (Bun.spawnSync([PYTHON, "-c", "import struct"]).exitCode !== 0) throw new Error(`${PYTHON} is required for this test`);
  cluster = await startCluster({ nodes: 0, segmentSize: "512MB" });
  // Debug logging: the gateway says when a client leaves mid-request and when it stops to wait
  // for a slow reader, the events the tests below wait for.
  node = await cluster.startNode("512MB", "--lm-port", "0", "--log-level", "debug");
  const [, p] = await node.process.waitFor(/LM gateway \(LMCache lm:\/\/ protocol\) listening on [\d.]+:(\d+)/, 20_000);
  port = Number(p);
}, 60_000);

afterAll(() => cluster?.stop());

describe("lm gateway", () => {
  test("LMCache's lm:// client: 32 MiB PUT, EXIST, GET with fmt/dtype/shape, HEALTH, miss", async () => {
    const r = await run([PYTHON, "-c", PY_CLIENT, String(port)], { timeoutMs: 60_000 });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("ok");
  }, 70_000);

  test("bad input closes that connection only", async () => {
    // A truncated header, then gone: nothing answered, nothing stored. The gateway logs that the
    // close came mid-request, so it did read the 100 bytes first; after that nothing can run.
    const truncated = await raw(req(1, "trunc", 10).subarray(0, 100), { end: true });
    expect(truncated.bytes.length).toBe(0);
    expect(truncated.closed).toBe(true);
    await closedMidRequest(truncated.localPort);
    // A length over the 512 MiB limit: a 400 header, then the connection closes.
    const over = await raw(req(1, "over", 1024 * 1024 * 1024));
    expect(over.bytes.length).toBe(36);
    expect(codeOf(over.bytes)).toBe(400);
    expect(over.closed).toBe(true);
    // Garbage (an HTTP request): unknown command, 400 and close.
    const garbage = await raw(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n".padEnd(200, "x")));
    expect(codeOf(garbage.bytes)).toBe(400);
    expect(garbage.closed).toBe(true);
    // A GET that claims a payload: wrong length, 400 and close.
    const wrong = await raw(req(2, "k", 16));
    expect(codeOf(wrong.bytes)).toBe(400);
    expect(wrong.closed).toBe(true);
    // Requests before the bad bytes are answered first.
    const before = await raw(new Uint8Array([...req(5, ""), ...req(42, "x")]));
    expect(before.bytes.length).toBe(72);
    expect([codeOf(before.bytes, 0), codeOf(before.bytes, 36)]).toEqual([200, 400]);
    // 1 MiB PUT announced, 1000 bytes sent, then gone: once the gateway has seen the close mid-
    // value (and dropped it), the key is not visible, and nothing is left that could store it.
    const half = await raw(new Uint8Array([...req(1, "half", 1024 * 1024), ...new Uint8Array(1000)]), { end: true });
    expect(half.closed).toBe(true);
    await closedMidRequest(half.localPort);
    expect(await exists("half")).toBe(400);
    expect(await exists("trunc")).toBe(400);
    // The node still serves: a small PUT then GET on a fresh connection.
    const value = new Uint8Array(4096).map((_, i) => i * 7);
    const r = await raw(new Uint8Array([...req(1, "after", value.length, [4096, 0, 0, 0]), ...value, ...req(2, "after")]), {
      want: 36 + 4096,
    });
    expect(codeOf(r.bytes)).toBe(200);
    expect(codeOf(r.bytes, 4)).toBe(4096);
    expect(codeOf(r.bytes, 16)).toBe(4096);
    expect(r.bytes.subarray(36, 36 + 4096)).toEqual(value);
  }, 30_000);

  test("slow reader: GETs pile up without the gateway buffering them all", async () => {
    const value = new Uint8Array(4 * MiB).fill(9);
    const reply = 36 + value.length;
    // What the kernel can hold of replies on the way (the gateway's send buffer, the client's
    // receive buffer), at most; ask for far more than that plus the gateway's 8 MiB bound.
    const kernelMax = (name: string) => Number(readFileSync(`/proc/sys/net/ipv4/${name}`, "utf8").trim().split(/\s+/)[2]);
    const inKernel = kernelMax("tcp_wmem") + kernelMax("tcp_rmem");
    const bound = 8 * MiB + reply; // unsent replies when the gateway stops: over 8 MiB by under one reply
    const count = Math.max(40, Math.ceil((inKernel + bound) / reply) + 10);
    const s = connect(port, "127.0.0.1");
    await new Promise<void>((r) => s.once("connect", () => r()));
    s.pause(); // read nothing: count * 4 MiB of replies are asked for
    s.write(new Uint8Array([...req(1, "slow", value.length), ...value]));
    const gets = new Uint8Array(count * 186);
    for (let i = 0; i < count; i++) gets.set(req(2, "slow"), i * 186);
    s.write(gets);
    // The event: the gateway stops running this connection's requests and waits for it to read,
    // with at most its bound unsent and most GETs not run. A gateway that buffered every reply
    // would never log this, and the test fails on the wait.
    const stalled = new RegExp(
      `lm ${escapeRe(`127.0.0.1:${s.localPort}`)}: (\\d+) reply bytes unsent; waiting for the client to read before running the (\\d+) queued requests`,
    );
    const [, unsent, queued] = await node.process.waitFor(stalled, 20_000);
    const ran = count - Number(queued);
    expect(Number(unsent)).toBeGreaterThan(8 * MiB);
    expect(Number(unsent)).toBeLessThanOrEqual(bound);
    // Every reply of a GET that ran is either unsent in the gateway or in the kernel.
    expect(ran * reply).toBeLessThanOrEqual(Number(unsent) + inKernel);
    expect(Number(queued)).toBeGreaterThanOrEqual(10);
    // And it stopped reading this connection: one more GET sits unread in the gateway's receive
    // queue (measured by the kernel, not reported by the gateway), even after the gateway has
    // served another connection meanwhile.
    s.write(req(2, "slow"));
    const unread = () => tcpQueues(port, s.localPort!)?.rx ?? 0;
    await waitUntil("the extra GET to reach the gateway's socket", () => unread() >= 186);
    const h = await raw(req(5, ""), { want: 36 });
    expect(codeOf(h.bytes)).toBe(200);
    expect(unread()).toBe(186);
    // Now the client reads: every reply arrives, in order, each a 200 header and the value.
    const replies = count + 1;
    const want = replies * reply;
    const done = Promise.withResolvers<void>();
    let got = 0;
    const headers: Buffer[] = [];
    let bad = 0;
    s.on("data", (d: Buffer) => {
      // Bytes of reply headers (offset within a reply < 36) are collected; value bytes must be 9.
      for (let at = 0; at < d.length; ) {
        const inReply = (got + at) % reply;
        const take = Math.min(d.length - at, inReply < 36 ? 36 - inReply : reply - inReply);
        const part = d.subarray(at, at + take);
        if (inReply < 36) headers.push(part);
        else if (part.some((b) => b !== 9)) bad++;
        at += take;
      }
      got += d.length;
      if (got >= want) done.resolve();
    });
    s.on("close", () => done.reject(new Error(`closed after ${got} of ${want} bytes`)));
    s.resume();
    await done.promise;
    s.destroy();
    expect(got).toBe(want);
    expect(bad).toBe(0);
    const all = new Uint8Array(Buffer.concat(headers));
    expect(all.length).toBe(replies * 36);
    for (let i = 0; i < replies; i++) {
      expect([codeOf(all, i * 36), codeOf(all, i * 36 + 4)]).toEqual([200, value.length]);
    }
  }, 60_000);
});

describe("examples/lmcache", () => {
  const files = readdirSync(`${ROOT}/examples/lmcache`).filter((f) => f.endsWith(".yaml"));
  test("has redis.yaml, resp.yaml, lm.yaml, mooncake-disk.yaml", () => {
    expect(files.sort()).toEqual(["lm.yaml", "mooncake-disk.yaml", "redis.yaml", "resp.yaml"]);
  });
  for (const f of files) {
    test(`${f} loads with inspect config, no warnings`, async () => {
      const r = await run([...CLI_FROM_SOURCE, "inspect", "config", "--config", `examples/lmcache/${f}`], { timeoutMs: 20_000 });
      expect(r.stderr).not.toMatch(/unknown key|WARN/);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/remote_url\s+(redis|resp|lm|mooncakestore):\/\//);
    });
  }
});
