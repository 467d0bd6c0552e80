// The transfer engine's metadata layer over real sockets on 127.0.0.1: the HTTP backend against our
// metadata server (publish/get/unpublish, Mooncake's rpc_meta duplicate rule, cluster ids), the
// handshake server and client (METADATA/PROBE/NOTIFY/CONNECTION, legacy frames, byte-exact replies),
// the P2P backend over it, and the bounds: oversize and garbage frames, silent clients, peers that
// never answer. Every wait is bounded; servers are stopped in afterAll/finally.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { configureLog } from "../../core/log.ts";
import { decodeHandshakeFrame, encodeHandshakeFrame, HandshakeType, LEGACY_FRAME_TYPE } from "../../core/transfer/handshake-frame.ts";
import { decodeSegmentDescriptor, rpcMetaKey, type SegmentDescriptor, segmentKey } from "../../core/transfer/segment-descriptor.ts";
import { MetadataHttpClient } from "../../metadata/http-client.ts";
import { type RunningMetadataServer, startMetadataServer } from "../../metadata/serve.ts";
import { chainBackends, createMetadataBackend, type MetadataBackend, P2P_HANDSHAKE, parseSegmentAddress } from "./backend.ts";
import {
  fetchPeerDescriptor,
  type HandshakeServer,
  handshakeRequest,
  notifyPeer,
  probePeer,
  RDMA_UNSUPPORTED_REPLY,
  startHandshakeServer,
} from "./handshake.ts";
import { GOLDEN_RAM } from "../../core/transfer/golden-descriptors.ts";

const TIMESTAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/;

// Keep expected warnings (dropped connections, refused RDMA handshakes) out of the test output.
const logLines: string[] = [];
configureLog({ sink: (line) => logLines.push(line) });

const desc = (name: string, addr = 139772150415360): SegmentDescriptor => ({
  name,
  protocol: "tcp",
  tcp_data_port: 16524,
  tcp_proto_version: 2,
  buffers: [{ name, addr, length: 268435456 }],
});

/** Send raw bytes to 127.0.0.1:port; collect what comes back until the server closes (or `ms`). */
function rawExchange(port: number, bytes: Uint8Array | null, ms = 3000): Promise<{ data: Uint8Array; closed: boolean; elapsedMs: number }> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let done = false;
    let sock: Socket<undefined> | undefined;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) {
        data.set(p, o);
        o += p.length;
      }
      if (!closed) sock?.terminate();
      resolve({ data, closed, elapsedMs: performance.now() - start });
    };
    const timer = setTimeout(() => finish(false), ms);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          sock = s;
          if (bytes) s.write(bytes);
        },
        data(_s, chunk) {
          parts.push(new Uint8Array(chunk));
        },
        close() {
          finish(true);
        },
        error() {
          finish(true);
        },
        connectError(_s, e) {
          done = true;
          clearTimeout(timer);
          reject(e);
        },
      },
    }).catch(() => {});
  });
}

/** A port nothing listens on: bind an ephemeral one and let it go. */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

describe("HTTP metadata backend", () => {
  let srv: RunningMetadataServer;
  let backend: MetadataBackend;
  let raw: MetadataHttpClient;

  beforeAll(async () => {
    srv = await startMetadataServer({ host: "127.0.0.1", port: 0 });
    backend = createMetadataBackend(srv.url, { timeoutMs: 3000 });
    raw = new MetadataHttpClient(srv.url, { timeoutMs: 3000 });
  });
  afterAll(async () => {
    await srv?.stop();
  });

  test("publish writes Mooncake's keys and bytes; get reads them back; unpublish removes both", async () => {
    const name = "127.0.0.1:12345";
    expect(backend.kind).toBe("http");
    await backend.publish(name, desc(name), { ip_or_host_name: "127.0.0.1", rpc_port: 16708 });

    // Byte-compatible with what the C++ target published (timestamp aside).
    const stored = await raw.get("mooncake/ram/127.0.0.1:12345");
    const ts = JSON.parse(stored!).timestamp as string;
    expect(ts).toMatch(TIMESTAMP);
    expect(stored).toBe(GOLDEN_RAM.replace("2026-11-23 21:56:39.465225", ts));
    expect(await raw.get("mooncake/rpc_meta/127.0.0.1:12345")).toBe('{"ip_or_host_name":"127.0.0.1","rpc_port":16708}');

    expect(await backend.getSegment(name)).toEqual({ ...desc(name), timestamp: ts });
    expect(await backend.getSegment(`/${name}`)).toEqual({ ...desc(name), timestamp: ts }); // leading "/" stripped
    expect(await backend.getRpcMeta(name)).toEqual({ ip_or_host_name: "127.0.0.1", rpc_port: 16708 });

    await backend.unpublish(name);
    expect(await backend.getSegment(name)).toBeNull();
    expect(await backend.getRpcMeta(name)).toBeNull();
    await backend.unpublish(name); // absent keys are fine
  });

  test("a golden descriptor put by a C++ node decodes", async () => {
    await raw.put("mooncake/ram/127.0.0.1:12345", GOLDEN_RAM);
    try {
      expect(await backend.getSegment("127.0.0.1:12345")).toEqual(decodeSegmentDescriptor(GOLDEN_RAM));
    } finally {
      await raw.delete("mooncake/ram/127.0.0.1:12345");
    }
  });

  test("a restarted node with a new rpc port replaces its rpc_meta despite the 400 rule", async () => {
    const name = "node-restart";
    await backend.publish(name, desc(name), { ip_or_host_name: "10.0.0.1", rpc_port: 15001 });
    // The server's rule is in force: a plain put of a different value is refused.
    const put = raw.put(rpcMetaKey(name), '{"ip_or_host_name":"10.0.0.1","rpc_port":15002}');
    await expect(put).rejects.toThrow("Duplicate rpc_meta key not allowed");
    await expect(put).rejects.toMatchObject({ status: 400 });
    // publish() deletes and re-puts.
    await backend.publish(name, desc(name), { ip_or_host_name: "10.0.0.1", rpc_port: 15002 });
    expect(await backend.getRpcMeta(name)).toEqual({ ip_or_host_name: "10.0.0.1", rpc_port: 15002 });
    // Re-publishing the same location is a plain 200.
    await backend.publish(name, desc(name), { ip_or_host_name: "10.0.0.1", rpc_port: 15002 });
    await backend.unpublish(name);
  });

  test("publish without rpc_meta writes the descriptor only", async () => {
    await backend.publish("seg-only", desc("seg-only"));
    expect(await raw.get(rpcMetaKey("seg-only"))).toBeNull();
    expect((await backend.getSegment("seg-only"))?.name).toBe("seg-only");
    await backend.unpublish("seg-only");
  });

  test("cluster id prefixes the keys", async () => {
    const b = createMetadataBackend(srv.url, { timeoutMs: 3000, clusterId: "c1" });
    await b.publish("n1", desc("n1"), { ip_or_host_name: "h", rpc_port: 1 });
    expect(srv.store.keys("mooncake/c1/")).toEqual(["mooncake/c1/ram/n1", "mooncake/c1/rpc_meta/n1"]);
    expect(segmentKey("n1", "c1")).toBe("mooncake/c1/ram/n1");
    expect(await backend.getSegment("n1")).toBeNull(); // the default cluster has no n1
    await b.unpublish("n1");
    expect(srv.store.keys("mooncake/c1/")).toEqual([]);
  });

  test("a corrupt descriptor in the registry is an error naming the segment and field", async () => {
    await raw.put(segmentKey("bad"), GOLDEN_RAM.replace('"addr":139772150415360', '"addr":0'));
    try {
      await expect(backend.getSegment("bad")).rejects.toThrow('segment descriptor of "bad": buffers[0].addr must be > 0');
    } finally {
      await raw.delete(segmentKey("bad"));
    }
  });

  test("an unreachable server is an error naming the URL", async () => {
    const b = createMetadataBackend(`http://127.0.0.1:${freePort()}/metadata`, { timeoutMs: 1000 });
    await expect(b.getSegment("x")).rejects.toThrow(/metadata GET http:\/\/127\.0\.0\.1:\d+\/metadata\?key=mooncake%2Fram%2Fx failed/);
  });
});

describe("conn strings", () => {
  test("etcd, redis and scheme-less (etcd) strings make etcd and redis backends; others are refused with a hint", async () => {
    // Nothing connects until the first lookup (etcd-backend.test.ts and redis-backend.test.ts run them).
    const made = ["etcd://127.0.0.1:2379", "127.0.0.1:2379,127.0.0.1:2380", "redis://127.0.0.1:6379"].map((s) =>
      createMetadataBackend(s, { timeoutMs: 1000 }),
    );
    expect(made.map((b) => b.kind)).toEqual(["etcd", "etcd", "redis"]);
    expect(made[1]!.describe("x")).toBe("metadata server etcd://127.0.0.1:2379,127.0.0.1:2380");
    for (const b of made) await b.close?.();
    expect(() => createMetadataBackend("ftp://x", { timeoutMs: 1000 })).toThrow(/unknown scheme "ftp": use http:\/\/.*or P2PHANDSHAKE/);
  });

  test("http, https and P2PHANDSHAKE are accepted", () => {
    expect(createMetadataBackend("http://127.0.0.1:8080/metadata", { timeoutMs: 1000 }).kind).toBe("http");
    expect(createMetadataBackend("https://meta.example:8443/metadata", { timeoutMs: 1000 }).kind).toBe("http");
    expect(createMetadataBackend(P2P_HANDSHAKE, { timeoutMs: 1000 }).kind).toBe("p2p");
  });
});

describe("P2P addresses (Mooncake's parseHostNameWithPort)", () => {
  test("host:port, default port, IPv6 forms, bad ports", () => {
    expect(parseSegmentAddress("10.0.0.2:15123")).toEqual({ host: "10.0.0.2", port: 15123 });
    expect(parseSegmentAddress("node01")).toEqual({ host: "node01", port: 12001 });
    expect(parseSegmentAddress("node01", 13000)).toEqual({ host: "node01", port: 13000 });
    expect(parseSegmentAddress("node01:notaport")).toEqual({ host: "node01", port: 12001 });
    expect(parseSegmentAddress("node01:70000")).toEqual({ host: "node01", port: 12001 });
    expect(parseSegmentAddress("[::1]:15123")).toEqual({ host: "::1", port: 15123 });
    expect(parseSegmentAddress("[fe80::1]")).toEqual({ host: "fe80::1", port: 12001 });
    expect(parseSegmentAddress("fe80::1")).toEqual({ host: "fe80::1", port: 12001 });
    expect(parseSegmentAddress("fe80::1%eth0:15123")).toEqual({ host: "fe80::1%eth0", port: 15123 });
    expect(parseSegmentAddress("fe80::1%eth0")).toEqual({ host: "fe80::1%eth0", port: 12001 });
  });

  test("getRpcMeta reads the name, with handshakePort as the default", async () => {
    const b = createMetadataBackend(P2P_HANDSHAKE, { timeoutMs: 1000, handshakePort: 13000 });
    expect(await b.getRpcMeta("10.0.0.2:15123")).toEqual({ ip_or_host_name: "10.0.0.2", rpc_port: 15123 });
    expect(await b.getRpcMeta("node01")).toEqual({ ip_or_host_name: "node01", rpc_port: 13000 });
  });
});

describe("handshake server and P2P backend", () => {
  let hs: HandshakeServer;
  const notifies: [string, string][] = [];
  let local = GOLDEN_RAM;

  beforeAll(() => {
    hs = startHandshakeServer({
      host: "127.0.0.1",
      port: 0,
      getLocalDescriptor: () => local,
      onNotify: (name, msg) => notifies.push([name, msg]),
      receiveTimeoutMs: 400,
    });
  });
  afterAll(() => hs?.stop());

  test("METADATA: fetchPeerDescriptor returns our descriptor; the P2P backend decodes it", async () => {
    expect(await fetchPeerDescriptor("127.0.0.1", hs.port, "{}", 2000)).toBe(GOLDEN_RAM);
    const b = createMetadataBackend(P2P_HANDSHAKE, { timeoutMs: 2000 });
    expect(b.kind).toBe("p2p");
    expect(await b.getSegment(`127.0.0.1:${hs.port}`)).toEqual(decodeSegmentDescriptor(GOLDEN_RAM));
    // publish is local: it becomes the request body; the registry-less getRpcMeta parses the name.
    await b.publish("127.0.0.1:1", desc("127.0.0.1:1"), { ip_or_host_name: "127.0.0.1", rpc_port: 1 });
    expect((await b.getSegment(`127.0.0.1:${hs.port}`))?.tcp_data_port).toBe(16524);
    await b.unpublish("127.0.0.1:1");
  });

  test("replies are byte-exact frames of the request's type, JSON ending in a newline", async () => {
    const probe = await rawExchange(hs.port, encodeHandshakeFrame(HandshakeType.PROBE, "{}\n"));
    expect(probe.closed).toBe(true);
    expect(probe.data).toEqual(encodeHandshakeFrame(HandshakeType.PROBE, '{"status":"success"}\n'));
    const meta = await rawExchange(hs.port, encodeHandshakeFrame(HandshakeType.METADATA, `${GOLDEN_RAM}\n`));
    expect(meta.data).toEqual(encodeHandshakeFrame(HandshakeType.METADATA, `${GOLDEN_RAM}\n`));
  });

  test("PROBE: alive peer true; nothing listening false", async () => {
    expect(await probePeer("127.0.0.1", hs.port, 2000)).toBe(true);
    expect(await probePeer("127.0.0.1", freePort(), 2000)).toBe(false);
  });

  test("NOTIFY reaches onNotify and is acknowledged", async () => {
    await notifyPeer("127.0.0.1", hs.port, "peer-a", "batch 7 done", 2000);
    expect(notifies).toContainEqual(["peer-a", "batch 7 done"]);
    const reply = await handshakeRequest("127.0.0.1", hs.port, HandshakeType.NOTIFY, '{"name":"b","notify_msg":"m"}', 2000);
    expect(reply).toBe('{"name":"","notify_msg":"success"}');
  });

  test("CONNECTION (RDMA QP handshake) is refused with a non-empty reply_msg, typed or legacy", async () => {
    const req = '{"local_gid":"","local_lid":0,"local_nic_path":"n@mlx5_0","payload":"","peer_nic_path":"m@mlx5_0","qp_num":[1,2],"ready_ack":false,"reply_msg":""}';
    const reply = JSON.parse(await handshakeRequest("127.0.0.1", hs.port, HandshakeType.CONNECTION, req, 2000));
    expect(reply.reply_msg).toBe(RDMA_UNSUPPORTED_REPLY);
    expect(reply.qp_num).toEqual([]);
    expect("ready_ack" in reply).toBe(false);

    const legacy = await rawExchange(hs.port, encodeHandshakeFrame(LEGACY_FRAME_TYPE, `${req}\n`));
    const frame = decodeHandshakeFrame(legacy.data);
    expect(frame.type).toBe(LEGACY_FRAME_TYPE); // the reply is untyped too
    expect(JSON.parse(frame.json).reply_msg).toBe(RDMA_UNSUPPORTED_REPLY);
  });

  test("a peer without a descriptor yet is an error, not an empty segment", async () => {
    const saved = local;
    local = "null";
    try {
      await expect(fetchPeerDescriptor("127.0.0.1", hs.port, "{}", 2000)).rejects.toThrow(`127.0.0.1:${hs.port}: peer has no segment descriptor`);
    } finally {
      local = saved;
    }
  });

  test("oversize frame: closed at the header, no reply, server still serves", async () => {
    const header = new Uint8Array(8);
    new DataView(header.buffer).setUint32(0, 2 << 20, true); // 2 MiB > 1 MiB
    const r = await rawExchange(hs.port, header);
    expect(r.closed).toBe(true);
    expect(r.data.length).toBe(0);
    expect(r.elapsedMs).toBeLessThan(300); // not the receive timeout: refused on sight
    expect(await probePeer("127.0.0.1", hs.port, 2000)).toBe(true);
  });

  test("garbage: HTTP request, zero length, malformed JSON, non-object JSON → closed, no reply", async () => {
    const enc = new TextEncoder();
    const zero = new Uint8Array(8);
    const badJson = encodeHandshakeFrame(HandshakeType.METADATA, "{not json");
    const arrayJson = encodeHandshakeFrame(HandshakeType.PROBE, "[1,2]");
    for (const bytes of [enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), zero, badJson, arrayJson]) {
      const r = await rawExchange(hs.port, bytes);
      expect(r.closed).toBe(true);
      expect(r.data.length).toBe(0);
    }
    expect(await probePeer("127.0.0.1", hs.port, 2000)).toBe(true);
    expect(logLines.some((l) => l.includes("handshake connection dropped"))).toBe(true);
  });

  test("a client that connects and says nothing is dropped after the receive timeout", async () => {
    const silent = await rawExchange(hs.port, null, 3000);
    expect(silent.closed).toBe(true);
    expect(silent.elapsedMs).toBeGreaterThanOrEqual(350);
    expect(silent.elapsedMs).toBeLessThan(2500);
    // A partial frame is no better.
    const partial = await rawExchange(hs.port, encodeHandshakeFrame(HandshakeType.PROBE, "{}\n").subarray(0, 10), 3000);
    expect(partial.closed).toBe(true);
    expect(partial.data.length).toBe(0);
  });

  test("requests split across many writes are reassembled", async () => {
    const frame = encodeHandshakeFrame(HandshakeType.PROBE, "{}\n");
    const reply = await new Promise<Uint8Array>((resolve, reject) => {
      const parts: Uint8Array[] = [];
      Bun.connect({
        hostname: "127.0.0.1",
        port: hs.port,
        socket: {
          async open(s) {
            for (const b of frame) {
              s.write(new Uint8Array([b]));
              await Bun.sleep(2);
            }
          },
          data: (_s, c) => void parts.push(new Uint8Array(c)),
          close: () => resolve(new Uint8Array(parts.flatMap((p) => [...p]))),
          connectError: (_s, e) => reject(e),
        },
      });
    });
    expect(reply).toEqual(encodeHandshakeFrame(HandshakeType.PROBE, '{"status":"success"}\n'));
  });
});

describe("peers that misbehave", () => {
  test("a peer that never answers: timeout error naming the address", async () => {
    const held: Socket<undefined>[] = [];
    const mute = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void held.push(s), data() {} } });
    try {
      const where = `127.0.0.1:${mute.port}`;
      const t0 = performance.now();
      await expect(fetchPeerDescriptor("127.0.0.1", mute.port, "{}", 300)).rejects.toThrow(`${where}: timed out after 300 ms`);
      expect(performance.now() - t0).toBeLessThan(2000);
      const b = createMetadataBackend(P2P_HANDSHAKE, { timeoutMs: 300 });
      await expect(b.getSegment(where)).rejects.toThrow(where);
      expect(await probePeer("127.0.0.1", mute.port, 300)).toBe(false);
    } finally {
      for (const s of held) s.terminate();
      mute.stop(true);
    }
  });

  test("nothing listening: connect error naming the address", async () => {
    const port = freePort();
    await expect(fetchPeerDescriptor("127.0.0.1", port, "{}", 2000)).rejects.toThrow(`127.0.0.1:${port}`);
  });

  test("a reply of the wrong type, or over the frame limit, is refused", async () => {
    const reply = (bytes: Uint8Array) =>
      Bun.listen({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          data(s) {
            s.write(bytes);
            s.end();
          },
        },
      });
    const wrongType = reply(encodeHandshakeFrame(HandshakeType.PROBE, '{"status":"success"}\n'));
    const huge = new Uint8Array(8);
    new DataView(huge.buffer).setUint32(4, 1, true); // 4 GiB
    const oversize = reply(huge);
    const truncated = reply(encodeHandshakeFrame(HandshakeType.METADATA, GOLDEN_RAM).subarray(0, 30));
    try {
      await expect(fetchPeerDescriptor("127.0.0.1", wrongType.port, "{}", 2000)).rejects.toThrow(
        `127.0.0.1:${wrongType.port}: replied with a PROBE frame to a METADATA request`,
      );
      await expect(fetchPeerDescriptor("127.0.0.1", oversize.port, "{}", 2000)).rejects.toThrow("over the limit");
      await expect(fetchPeerDescriptor("127.0.0.1", truncated.port, "{}", 2000)).rejects.toThrow(
        `127.0.0.1:${truncated.port}: connection closed before a complete reply (30 bytes received)`,
      );
    } finally {
      wrongType.stop(true);
      oversize.stop(true);
      truncated.stop(true);
    }
  });

  test("connections beyond maxConnections are dropped at once", async () => {
    const hs = startHandshakeServer({ host: "127.0.0.1", port: 0, getLocalDescriptor: () => GOLDEN_RAM, maxConnections: 1, receiveTimeoutMs: 1500 });
    try {
      const first = rawExchange(hs.port, null, 3000); // holds the only slot until its timeout
      await Bun.sleep(100);
      const second = await rawExchange(hs.port, encodeHandshakeFrame(HandshakeType.PROBE, "{}\n"), 3000);
      expect(second.closed).toBe(true);
      expect(second.data.length).toBe(0);
      expect(second.elapsedMs).toBeLessThan(1000);
      expect((await first).closed).toBe(true);
      expect(await probePeer("127.0.0.1", hs.port, 2000)).toBe(true); // the slot is free again
    } finally {
      hs.stop();
    }
  });
});

describe("chainBackends", () => {
  const fake = (kind: "http" | "p2p", entries: Record<string, string>, fails = false): MetadataBackend => ({
    kind,
    describe: (name) => `${kind} for ${name}`,
    getSegment: async (name) => {
      if (fails) throw new Error("down");
      return entries[name] ? ({ name: entries[name] } as unknown as SegmentDescriptor) : null;
    },
    getRpcMeta: async (name) => (entries[name] ? { ip_or_host_name: kind, rpc_port: 1 } : null),
    publish: async () => {},
    unpublish: async () => {},
  });

  test("the first registry's entry wins; a miss or a failure asks the second; rpc_meta follows the descriptor", async () => {
    const chain = chainBackends(fake("http", { a: "from-http" }), fake("p2p", { a: "from-p2p", b: "b-from-p2p" }));
    expect(((await chain.getSegment("a")) as unknown as { name: string }).name).toBe("from-http");
    expect(((await chain.getSegment("b")) as unknown as { name: string }).name).toBe("b-from-p2p");
    expect((await chain.getRpcMeta("b"))?.ip_or_host_name).toBe("p2p");
    const down = chainBackends(fake("http", {}, true), fake("p2p", { c: "c" }));
    expect(await down.getSegment("c")).not.toBeNull();
    const both = chainBackends(fake("http", {}, true), fake("p2p", {}, true));
    await expect(both.getSegment("d")).rejects.toThrow("http for d: down; p2p for d: down");
  });
});
