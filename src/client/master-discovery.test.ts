// MasterClient with an etcd:// address against a real etcd and fake masters on loopback sockets
// (fakes can hold a call unanswered, so what happens to calls in flight at a change of leader is
// observable): address parsing, the view key, following the view, calls in flight on a leader
// change (reads retried once on the new leader, writes failed with RPC_FAIL), no leader (calls fail
// by their deadline with RPC_TIMEOUT), the version check on every new leader, connect errors, and
// the admin URL that inspect / kv ls derive from an etcd address.
// The view is written here as a Mooncake leader writes it: the address under a 5 s lease.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import type { Etcd3, Lease } from "etcd3";
import { ErrorCode } from "../core/errors.ts";
import { encodeFrames, type Frame, FrameReader, RESPONSE_BIT } from "../core/rpc/frame.ts";
import { METHODS, type MethodName, pb } from "../core/rpc/methods.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";
import { type EtcdMember, freePorts, startEtcd } from "../../tests/helpers/etcd.ts";
import { waitUntil } from "../../tests/helpers/wait.ts";
import { adminBaseUrlFor, UnreachableError } from "../cli/admin-http.ts";
import { MasterClient, parseHostPort } from "./master-client.ts";
import { DEFAULT_MASTER_CLUSTER_ID, masterClusterId, masterViewKey, parseMasterAddress } from "./master-discovery.ts";

const ID = Object.fromEntries(Object.entries(METHODS).map(([name, def]) => [name, def.id])) as Record<MethodName, number>;

/**
 * A fake master: answers ServiceReady with `version`, ExistKey with exists=true, anything else
 * with an empty (all-default, i.e. OK) reply; methods in `hold` are recorded but never answered.
 */
function fakeMaster(name: string, options: { version?: string } = {}) {
  const state = {
    hold: new Set<number>(),
    /** Method ids received, in order (ServiceReady included). */
    received: [] as number[],
    sockets: new Set<Socket<FrameReader>>(),
    mode: "serve" as "serve" | "drop",
  };
  const readyReply = (version: string) =>
    pb.ServiceReadyResponse.encode({ errorCode: version === STORE_PROTOCOL_VERSION ? 0 : ErrorCode.INVALID_VERSION, version }).finish();
  const existsReply = pb.ExistKeyResponse.encode({ errorCode: 0, exists: true }).finish();
  const server: TCPSocketListener<FrameReader> = Bun.listen<FrameReader>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        if (state.mode === "drop") return void s.end();
        s.data = new FrameReader();
        state.sockets.add(s);
      },
      data(s, chunk) {
        const out: Frame[] = [];
        for (const f of s.data.push(chunk)) {
          state.received.push(f.method);
          if (state.hold.has(f.method)) continue;
          const body =
            f.method === ID.serviceReady
              ? readyReply(options.version ?? STORE_PROTOCOL_VERSION)
              : f.method === ID.existKey
                ? existsReply
                : new Uint8Array(0);
          out.push({ method: f.method | RESPONSE_BIT, requestId: f.requestId, body });
        }
        if (out.length > 0) s.write(encodeFrames(out));
      },
      close(s) {
        state.sockets.delete(s);
      },
    },
  });
  return {
    name,
    state,
    address: `127.0.0.1:${server.port}`,
    /** Calls of `method` received so far. */
    count: (method: MethodName) => state.received.filter((m) => m === ID[method]).length,
    dropAll() {
      for (const s of state.sockets) s.end();
    },
    stop: () => server.stop(true),
  };
}

/** Writes the view key as a Mooncake leader does: the address under its own 5 s lease. */
class ViewWriter {
  private lease: Lease | null = null;
  constructor(
    private readonly etcd: Etcd3,
    readonly key: string,
  ) {}
  /** A new leader: the old one's lease ends (key deleted), the new one creates the key. Returns its view_version. */
  async elect(address: string): Promise<number> {
    await this.remove();
    this.lease = this.etcd.lease(5);
    await this.lease.put(this.key).value(address);
    const r = await this.etcd.get(this.key).exec();
    return Number(r.kvs[0]!.create_revision);
  }
  /** An operator's overwrite of the value, under the same lease (no delete in between). */
  async overwrite(address: string): Promise<void> {
    await this.lease!.put(this.key).value(address);
  }
  async remove(): Promise<void> {
    const lease = this.lease;
    this.lease = null;
    if (lease) await lease.revoke();
  }
}

let etcd: EtcdMember & { connString: string };
let etcdClient: Etcd3;
let url: string;
const fakes: ReturnType<typeof fakeMaster>[] = [];
const clients: MasterClient[] = [];
const writers: ViewWriter[] = [];
let clusterSeq = 0;

beforeAll(async () => {
  etcd = await startEtcd();
  url = `etcd://${etcd.endpoint}`;
  const { Etcd3 } = await import("etcd3");
  const passThrough = { execute: async <T>(fn: (c: { signal: AbortSignal }) => T) => fn({ signal: new AbortController().signal }) };
  etcdClient = new Etcd3({ hosts: [`http://${etcd.endpoint}`], faultHandling: { host: () => passThrough as never, global: passThrough as never } });
}, 30_000);

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const w of writers.splice(0)) await w.remove().catch(() => {});
  for (const f of fakes.splice(0)) f.stop();
});

afterAll(async () => {
  etcdClient?.close();
  await etcd?.stop();
});

/** A fresh cluster id per test, so views of earlier tests do not interfere. */
function cluster() {
  const clusterId = `discovery-test-${process.pid}-${++clusterSeq}`;
  const writer = new ViewWriter(etcdClient, masterViewKey(clusterId));
  writers.push(writer);
  return { clusterId, writer };
}

function master(name: string, options: { version?: string } = {}) {
  const m = fakeMaster(name, options);
  fakes.push(m);
  return m;
}

async function connect(clusterId: string, options: { timeoutMs?: number } = {}) {
  const c = await MasterClient.connect(url, { clusterId, timeoutMs: options.timeoutMs ?? 3000, connectTimeoutMs: 1000 });
  clients.push(c);
  return c;
}

/** The call's error (code and message), or null if it succeeded; and how long it took. */
async function outcome(p: Promise<unknown>): Promise<{ code: number | null; message: string; ms: number }> {
  const t = performance.now();
  try {
    await p;
    return { code: null, message: "", ms: performance.now() - t };
  } catch (e) {
    return { code: (e as { code?: number }).code ?? -1, message: (e as Error).message, ms: performance.now() - t };
  }
}

const exist = (c: MasterClient) => c.call("existKey", { key: "k" });

describe("master addresses", () => {
  test("host:port, [v6]:port, and etcd:// with ; or , between endpoints (default port 2379)", () => {
    expect(parseMasterAddress("127.0.0.1:50051")).toEqual({ kind: "direct", host: "127.0.0.1", port: 50051 });
    expect(parseMasterAddress("[fd00::1]:50051")).toEqual({ kind: "direct", host: "fd00::1", port: 50051 });
    expect(parseMasterAddress("etcd://h1:2379;h2:2380")).toEqual({
      kind: "etcd",
      url: "etcd://h1:2379;h2:2380",
      endpoints: ["http://h1:2379", "http://h2:2380"],
    });
    expect((parseMasterAddress("etcd://h1, h2:2381,") as { endpoints: string[] }).endpoints).toEqual(["http://h1:2379", "http://h2:2381"]);
  });

  test("bad addresses: a clear INVALID_PARAMS naming what is wrong", () => {
    const error = (a: string) => {
      try {
        parseMasterAddress(a);
        return null;
      } catch (e) {
        return e as Error & { code: number };
      }
    };
    expect(error("etcd://")?.message).toContain('master address "etcd://": no etcd endpoints (use etcd://<host>:<port>');
    expect(error("etcd://;;")?.code).toBe(ErrorCode.INVALID_PARAMS);
    expect(error("etcd://h1:99999")?.message).toContain('"h1:99999" is not an etcd endpoint');
    expect(error("redis://h:6379")?.message).toContain("redis:// is not supported");
    expect(error("localhost")?.message).toContain('master address "localhost" is not host:port');
    // One master's host:port is still what parseHostPort (Mooncake's coro client, …) wants.
    expect(() => parseHostPort("etcd://h1:2379")).toThrow(/only MasterClient.connect follows etcd/);
  });

  test("MasterClient.connect with etcd:// and no host rejects at once", async () => {
    const r = await outcome(MasterClient.connect("etcd://", { timeoutMs: 5000 }));
    expect(r.code).toBe(ErrorCode.INVALID_PARAMS);
    expect(r.ms).toBeLessThan(3000);
  });

  test("the view key and the cluster id: explicit, MC_STORE_CLUSTER_ID, else mooncake_cluster", () => {
    expect(DEFAULT_MASTER_CLUSTER_ID).toBe("mooncake_cluster");
    expect(masterClusterId(undefined, {})).toBe("mooncake_cluster");
    expect(masterClusterId(undefined, { MC_STORE_CLUSTER_ID: "" })).toBe("mooncake_cluster");
    expect(masterClusterId(undefined, { MC_STORE_CLUSTER_ID: "prod" })).toBe("prod");
    expect(masterClusterId("mine", { MC_STORE_CLUSTER_ID: "prod" })).toBe("mine");
    expect(masterViewKey("mooncake_cluster")).toBe("mooncake-store/mooncake_cluster/master_view");
    expect(masterViewKey("prod/")).toBe("mooncake-store/prod/master_view");
  });
});

describe("MasterClient over etcd://", () => {
  test("connects to the leader the view names and follows it when it changes", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    const b = master("B");
    const versionA = await writer.elect(a.address);
    const c = await connect(clusterId);
    expect(c.leaderAddress).toBe(a.address);
    expect(c.viewVersion).toBe(versionA);
    expect(c.address).toBe(url);
    await exist(c);
    expect(a.count("existKey")).toBe(1);

    const versionB = await writer.elect(b.address);
    expect(versionB).toBeGreaterThan(versionA);
    const t = performance.now();
    await waitUntil("the client to follow the view to B", () => c.leaderAddress === b.address, { timeoutMs: 1000 });
    expect(performance.now() - t).toBeLessThan(5000);
    expect(c.viewVersion).toBe(versionB);
    for (let i = 0; i < 5; i++) await exist(c);
    expect(b.count("existKey")).toBe(5);
    expect(a.count("existKey")).toBe(1);
    // ServiceReady's version check ran on B too: once for connect() on A, then the handshakes.
    expect(b.count("serviceReady")).toBe(1);
  }, 20_000);

  test("calls in flight at a change of leader: reads are retried on the new one, writes fail with RPC_FAIL", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    const b = master("B");
    await writer.elect(a.address);
    const c = await connect(clusterId, { timeoutMs: 5000 });
    a.state.hold = new Set([ID.existKey, ID.putStart, ID.ping, ID.remove]);
    const read = outcome(exist(c));
    const ping = outcome(c.call("ping", {}));
    const write = outcome(c.call("putStart", { key: "k", totalLen: 10 }));
    const remove = outcome(c.call("remove", { key: "k" }));
    await waitUntil("A to hold the four calls", () => a.state.received.length >= 5);
    expect(c.inFlight).toBe(4);

    await writer.overwrite(b.address); // same lease, new value: the leader changes without a gap
    const [r, p, w, rm] = await Promise.all([read, ping, write, remove]);
    expect(r.code).toBeNull(); // answered by B
    expect(p.code).toBeNull();
    expect(b.count("existKey")).toBe(1);
    expect(b.count("ping")).toBe(1);
    for (const x of [w, rm]) {
      expect(x.code).toBe(ErrorCode.RPC_FAIL);
      expect(x.message).toContain(`master leader changed from ${a.address} to ${b.address}`);
      expect(x.message).toContain("may have been applied");
    }
    expect(w.message).toContain("putStart was in flight");
    // Writes were not sent again anywhere.
    expect(b.count("putStart")).toBe(0);
    expect(b.count("remove")).toBe(0);
  }, 20_000);

  test("a read is retried once only: lost again on the second new leader, it fails with RPC_FAIL", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    const b = master("B");
    const d = master("D");
    await writer.elect(a.address);
    const c = await connect(clusterId, { timeoutMs: 2000 });
    a.state.hold = new Set([ID.existKey]);
    b.state.hold = new Set([ID.existKey]);
    const read = outcome(exist(c));
    await waitUntil("A to hold the read", () => a.count("existKey") === 1);
    await writer.elect(b.address);
    await waitUntil("B to hold the retried read", () => b.count("existKey") === 1);
    await writer.elect(d.address);
    const r = await read;
    expect(r.code).toBe(ErrorCode.RPC_FAIL);
    expect(r.message).toMatch(/master leader changed.*existKey was in flight/);
    expect(d.count("existKey")).toBe(0);
  }, 20_000);

  test("no leader (view key deleted): calls wait for one until their deadline, then RPC_TIMEOUT; a new leader in time serves them", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    const b = master("B");
    await writer.elect(a.address);
    const c = await connect(clusterId, { timeoutMs: 1000 });
    await writer.remove();
    await waitUntil("the client to see the view gone", () => c.leaderAddress === null, { timeoutMs: 1000 });
    expect(c.viewVersion).toBeNull();
    const r = await outcome(exist(c));
    expect(r.code).toBe(ErrorCode.RPC_TIMEOUT);
    expect(r.message).toContain(`no master leader in ${url} (view key ${masterViewKey(clusterId)} absent)`);
    expect(r.ms).toBeGreaterThan(800);
    expect(r.ms).toBeLessThan(5000);
    expect(a.count("existKey")).toBe(0);

    // A call made while there is no leader is served once one appears within its deadline.
    const late = outcome(exist(c));
    await Bun.sleep(300);
    await writer.elect(b.address);
    const l = await late;
    expect(l.code).toBeNull();
    expect(b.count("existKey")).toBe(1);
  }, 20_000);

  test("connection lost without a view change: a read in flight is retried on reconnect, a write fails", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    await writer.elect(a.address);
    const c = await connect(clusterId, { timeoutMs: 3000 });
    a.state.hold = new Set([ID.existKey, ID.putEnd]);
    const read = outcome(exist(c));
    const write = outcome(c.call("putEnd", { meta: { key: "k" } }));
    await waitUntil("A to hold both", () => a.count("existKey") === 1 && a.count("putEnd") === 1);
    a.state.hold = new Set();
    a.dropAll();
    const [r, w] = await Promise.all([read, write]);
    expect(r.code).toBeNull();
    expect(a.count("existKey")).toBe(2);
    expect(w.code).toBe(ErrorCode.RPC_FAIL);
    expect(w.message).toContain(`connection to master leader ${a.address} lost while putEnd was in flight; it may have been applied`);
    expect(a.count("putEnd")).toBe(1);
  }, 20_000);

  test("a leader that is down: calls fail by their deadline naming it, and the next leader serves", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    await writer.elect(a.address);
    const c = await connect(clusterId, { timeoutMs: 800 });
    const [deadPort] = await freePorts(1);
    await writer.elect(`127.0.0.1:${deadPort}`);
    await waitUntil("the client to follow the view", () => c.leaderAddress === `127.0.0.1:${deadPort}`, { timeoutMs: 1000 });
    const r = await outcome(exist(c));
    expect(r.code).toBe(ErrorCode.RPC_TIMEOUT);
    expect(r.message).toContain(`master leader 127.0.0.1:${deadPort}`);
    expect(r.message).toContain("unreachable");
    expect(r.ms).toBeLessThan(5000);
    const b = master("B");
    await writer.elect(b.address);
    await waitUntil("B", () => c.leaderAddress === b.address, { timeoutMs: 1000 });
    expect((await outcome(exist(c))).code).toBeNull();
  }, 20_000);

  test("a view whose value is not host:port: calls fail by their deadline saying so", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    await writer.elect(a.address);
    const c = await connect(clusterId, { timeoutMs: 600 });
    await writer.elect("not-an-address");
    await waitUntil("the view to move", () => c.leaderAddress === "not-an-address", { timeoutMs: 1000 });
    const r = await outcome(exist(c));
    expect(r.code).toBe(ErrorCode.RPC_TIMEOUT);
    expect(r.message).toContain(`the view key ${masterViewKey(clusterId)} in ${url} holds "not-an-address", which is not host:port`);
  }, 20_000);

  test("ServiceReady's version check runs on every new leader: one of another version fails calls with INVALID_VERSION", async () => {
    const { clusterId, writer } = cluster();
    const a = master("A");
    const old = master("old", { version: "0.0.1" });
    await writer.elect(a.address);
    const c = await connect(clusterId);
    await writer.elect(old.address);
    await waitUntil("the view to move", () => c.leaderAddress === old.address, { timeoutMs: 1000 });
    const r = await outcome(exist(c));
    expect(r.code).toBe(ErrorCode.INVALID_VERSION);
    expect(r.message).toContain(`master leader ${old.address}`);
    expect(r.message).toContain("speaks store version 0.0.1");
    expect(old.count("existKey")).toBe(0);
    // Until the view changes, calls fail at once rather than waiting.
    expect((await outcome(exist(c))).ms).toBeLessThan(1000);
    await writer.elect(a.address);
    await waitUntil("back to A", () => c.leaderAddress === a.address, { timeoutMs: 1000 });
    expect((await outcome(exist(c))).code).toBeNull();
  }, 20_000);

  test("connect: no view → RPC_TIMEOUT after the call deadline; etcd not answering → RPC_FAIL naming it", async () => {
    const { clusterId } = cluster();
    const none = await outcome(MasterClient.connect(url, { clusterId, timeoutMs: 700 }));
    expect(none.code).toBe(ErrorCode.RPC_TIMEOUT);
    expect(none.message).toContain(`serviceReady: waited 700 ms for a master: no master leader in ${url}`);
    expect(none.ms).toBeLessThan(5000);

    const [deadPort] = await freePorts(1);
    const down = await outcome(MasterClient.connect(`etcd://127.0.0.1:${deadPort}`, { clusterId, timeoutMs: 700 }));
    expect(down.code).toBe(ErrorCode.RPC_FAIL);
    expect(down.message).toContain(`cannot read the master view ${masterViewKey(clusterId)} from etcd://127.0.0.1:${deadPort}`);
    expect(down.ms).toBeLessThan(5000);
  }, 20_000);
});

describe("admin URL of an etcd:// master address (inspect, kv ls)", () => {
  test("the leader's host on port 9003; --admin wins; no view is 'unreachable' naming the key", async () => {
    const { clusterId, writer } = cluster();
    const saved = process.env.MC_STORE_CLUSTER_ID;
    process.env.MC_STORE_CLUSTER_ID = clusterId;
    try {
      await writer.elect("10.1.2.3:50051");
      expect(await adminBaseUrlFor(undefined, url, 2000)).toBe("http://10.1.2.3:9003");
      expect(await adminBaseUrlFor("http://h:1/", url, 2000)).toBe("http://h:1");
      expect(await adminBaseUrlFor(undefined, "10.0.0.9:50051", 2000)).toBe("http://10.0.0.9:9003");
      await writer.remove();
      const error = await adminBaseUrlFor(undefined, url, 2000).then(
        () => null,
        (e: Error) => e,
      );
      expect(error).toBeInstanceOf(UnreachableError);
      expect(error?.message).toContain(`no master leader in ${url} (view key ${masterViewKey(clusterId)} absent)`);
    } finally {
      if (saved === undefined) delete process.env.MC_STORE_CLUSTER_ID;
      else process.env.MC_STORE_CLUSTER_ID = saved;
    }
  }, 20_000);
});
