// `mooncake master` as a real process on 127.0.0.1: start-up lines, admin and metadata HTTP,
// Mooncake's flag spellings, bad flags, liveness expiry end to end, `bench master`, clean shutdown,
// the three bind flags (no exposure warning when all are loopback) and the metadata body rule.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MasterClient } from "../../src/client/master-client.ts";
import { pb } from "../../src/core/rpc/methods.ts";
import { CLI_FROM_SOURCE, run, type Started, start } from "../helpers/process.ts";

interface RunningMaster {
  process: Started;
  rpc: string;
  admin: string;
  metadata: string;
}

const masters: Started[] = [];

async function startMaster(...flags: string[]): Promise<RunningMaster> {
  const process = start([
    ...CLI_FROM_SOURCE,
    "master",
    "--rpc_port=0",
    "--metrics_port=0",
    "--http_metadata_server_port=0",
    "--rpc_address=127.0.0.1",
    "--metrics_host=127.0.0.1",
    "--http_metadata_server_host=127.0.0.1",
    ...flags,
  ]);
  masters.push(process);
  const [, rpcPort] = await process.waitFor(/Master service started on port (\d+)/);
  const [, metadataPort] = await process.waitFor(/HTTP metadata server started on [\d.]+:(\d+)/);
  const [, adminPort] = await process.waitFor(/Master admin server started on port (\d+)/);
  return {
    process,
    rpc: `127.0.0.1:${rpcPort}`,
    admin: `http://127.0.0.1:${adminPort}`,
    metadata: `http://127.0.0.1:${metadataPort}/metadata`,
  };
}

afterAll(() => {
  for (const m of masters) m.kill();
});

describe("mooncake master", () => {
  let m: RunningMaster;
  beforeAll(async () => {
    m = await startMaster("--default_kv_lease_ttl=5s", "--eviction-high-watermark-ratio", "0.95");
  });

  test("logs Mooncake's start-up line with the flag values it runs with", () => {
    const line = m.process.stderr().split("\n").find((l) => l.includes("Master service started on port"))!;
    expect(line).toContain("default_kv_lease_ttl=5000");
    expect(line).toContain("eviction_high_watermark_ratio=0.95");
    expect(line).toContain("enable_http_metadata_server=1");
  });

  test("admin: /health, /role, /metrics, and an empty master's listings", async () => {
    const health = await fetch(`${m.admin}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe(
      '{"status":"ok","role":"leader","ha_state":"serving","service_ready":true,"leader_address":null,"view_version":null}',
    );
    expect(await (await fetch(`${m.admin}/role`)).text()).toBe("leader");
    const metrics = await (await fetch(`${m.admin}/metrics`)).text();
    for (const name of ["master_key_count 0", "master_total_capacity_bytes 0", "process_resident_memory_bytes "]) {
      expect(metrics).toContain(name);
    }
    const missing = await fetch(`${m.admin}/query_key?key=nope`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toBe('{"success":false,"error_code":-704,"error_message":"OBJECT_NOT_FOUND"}');
  });

  test("--rpc_address, --metrics_host, --http_metadata_server_host = 127.0.0.1: no exposure line, all answer there", async () => {
    expect(m.process.stderr()).not.toContain("exposed without authentication");
    const c = await MasterClient.connect(m.rpc);
    try {
      expect((await c.call("existKey", { key: "nothing" })).exists).toBe(false);
    } finally {
      c.close();
    }
    expect((await fetch(`${m.admin}/health`)).status).toBe(200);
    expect((await fetch(`${m.metadata}?key=absent`)).status).toBe(404);
  });

  test("admin: POST /api/v1/remove_all from loopback is served", async () => {
    const r = await fetch(`${m.admin}/api/v1/remove_all?force=true`, { method: "POST" });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('{"success":true,"removed_count":0}');
  });

  test("embedded metadata server: a body that is not JSON is refused (400)", async () => {
    const r = await fetch(`${m.metadata}?key=not-json`, { method: "PUT", body: "v" });
    expect(r.status).toBe(400);
    expect(await r.text()).toStartWith("invalid JSON body: ");
    expect((await fetch(`${m.metadata}?key=not-json`)).status).toBe(404);
  });

  test("embedded metadata server: PUT then GET, missing key 404", async () => {
    const key = encodeURIComponent("mooncake/ram/127.0.0.1:12345");
    expect(await (await fetch(`${m.metadata}?key=${key}`, { method: "PUT", body: '{"a":1}' })).text()).toBe(
      "metadata updated",
    );
    expect(await (await fetch(`${m.metadata}?key=${key}`)).text()).toBe('{"a":1}');
    const missing = await fetch(`${m.metadata}?key=absent`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toBe("metadata not found");
  });

  test("a put through RPC shows up in the admin endpoints", async () => {
    const c = await MasterClient.connect(m.rpc);
    try {
      const node = { first: 5, second: 6 };
      const segment = { id: { first: 7, second: 8 }, name: "127.0.0.1:9999", base: 4096, size: 64 * 2 ** 20, teEndpoint: "127.0.0.1:9999", protocol: "tcp" };
      expect((await c.call("mountSegment", { segment, clientId: node })).errorCode).toBe(0);
      await c.call("putStart", { clientId: node, key: "llama@1@0@ff@bfloat16", totalLen: 2 ** 20 });
      await c.call("putEnd", { clientId: node, meta: { key: "llama@1@0@ff@bfloat16" } });
      expect(await (await fetch(`${m.admin}/get_all_keys`)).text()).toBe("llama@1@0@ff@bfloat16\n");
      expect(await (await fetch(`${m.admin}/get_all_segments`)).text()).toBe("127.0.0.1:9999\n");
      const metrics = await (await fetch(`${m.admin}/metrics`)).text();
      expect(metrics).toContain("master_key_count 1");
      expect(metrics).toContain(`master_total_capacity_bytes ${64 * 2 ** 20}`);
      expect((await c.call("removeAll", { force: true })).removedCount).toBe(1);
      expect((await c.call("unmountSegment", { segmentId: segment.id, clientId: node })).errorCode).toBe(0);
    } finally {
      c.close();
    }
  });

  test("bench master --json prints parseable figures", async () => {
    const r = await run(
      [...CLI_FROM_SOURCE, "bench", "master", "--master", m.rpc, "--operation", "batch-get", "--keys", "2000", "--duration", "500ms", "--json"],
      { timeoutMs: 30_000 },
    );
    expect(r.exitCode).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.operation).toBe("batch-get");
    expect(result.keysPerS).toBeGreaterThan(0);
    expect(result.errors).toEqual({});
    expect(result.latency.p50Us).toBeGreaterThan(0);
    // The bench cleans up after itself.
    expect(await (await fetch(`${m.admin}/get_all_keys`)).text()).toBe("");
  });

  test("SIGTERM: 'Shutdown signal received', exit 0", async () => {
    m.process.proc.kill("SIGTERM");
    expect(await m.process.proc.exited).toBe(0);
    expect(m.process.stderr()).toContain("Shutdown signal received, exiting gracefully");
  });
});

describe("exposure", () => {
  test("the start-up check runs: with every port on loopback it logs only a debug line", async () => {
    const m = await startMaster("--log-level", "debug");
    try {
      await m.process.waitFor(/no port exposed beyond loopback \(rpc, admin, metadata/);
      expect(m.process.stderr()).not.toContain("exposed without authentication");
    } finally {
      m.process.kill();
    }
  });
});

describe("metadata bodies", () => {
  test("--http_metadata_server_accept_any_body stores any bytes, as Mooncake's server does", async () => {
    const m = await startMaster("--http_metadata_server_accept_any_body");
    try {
      expect(await (await fetch(`${m.metadata}?key=k`, { method: "PUT", body: "v" })).text()).toBe("metadata updated");
      expect(await (await fetch(`${m.metadata}?key=k`)).text()).toBe("v");
    } finally {
      m.process.kill();
    }
  });
});

describe("liveness", () => {
  test("a store node that stops pinging is unmounted and its metadata entries removed", async () => {
    const m = await startMaster("--client_ttl=1");
    const c = await MasterClient.connect(m.rpc);
    try {
      const node = { first: 1, second: 1 };
      const name = "127.0.0.1:15555";
      const segment = { id: { first: 2, second: 2 }, name, base: 4096, size: 2 ** 24, teEndpoint: name, protocol: "tcp" };
      await c.call("mountSegment", { segment, clientId: node });
      await c.call("reMountSegment", { segments: [segment], clientId: node });
      expect((await c.call("ping", { clientId: node })).clientStatus).toBe(pb.ClientStatus.OK);
      await c.call("putStart", { clientId: node, key: "doomed", totalLen: 4096 });
      await c.call("putEnd", { clientId: node, meta: { key: "doomed" } });
      for (const k of [`mooncake/ram/${name}`, `mooncake/rpc_meta/${name}`]) {
        await fetch(`${m.metadata}?key=${encodeURIComponent(k)}`, { method: "PUT", body: "{}" });
      }
      // No pings: within client_ttl (1 s) plus a liveness tick or two the node is gone.
      const deadline = Date.now() + 8000;
      while (Date.now() < deadline && (await (await fetch(`${m.admin}/get_all_segments`)).text()) !== "") {
        await Bun.sleep(100);
      }
      expect(await (await fetch(`${m.admin}/get_all_segments`)).text()).toBe("");
      expect((await c.call("existKey", { key: "doomed" })).exists).toBe(false);
      expect((await fetch(`${m.metadata}?key=${encodeURIComponent(`mooncake/ram/${name}`)}`)).status).toBe(404);
      expect((await fetch(`${m.metadata}?key=${encodeURIComponent(`mooncake/rpc_meta/${name}`)}`)).status).toBe(404);
      // It comes back: NEED_REMOUNT, then remount gives it an empty segment.
      expect((await c.call("ping", { clientId: node })).clientStatus).toBe(pb.ClientStatus.NEED_REMOUNT);
      expect((await c.call("reMountSegment", { segments: [segment], clientId: node })).errorCode).toBe(0);
      expect(await (await fetch(`${m.admin}/get_all_segments`)).text()).toBe(`${name}\n`);
    } finally {
      c.close();
      m.process.kill();
    }
  });
});

describe("flags", () => {
  const master = (...flags: string[]) => run([...CLI_FROM_SOURCE, "master", ...flags], { timeoutMs: 10_000 });

  test("an out-of-range value exits 2 and names the flag", async () => {
    const r = await master("--eviction_ratio=2");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe("mooncake: --eviction_ratio: invalid eviction_ratio: expected 0..1, got 2\n");
  });

  test("a bad duration exits 2", async () => {
    const r = await master("--default_kv_lease_ttl=soon");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("default_kv_lease_ttl");
  });

  test("--enable_ha=true without etcd endpoints is refused clearly", async () => {
    const r = await master("--enable_ha=true");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("--enable_ha needs the etcd endpoints");
    expect(r.stderr).not.toContain("    at ");
  });

  test("an unknown flag exits 2 with the usage line", async () => {
    const r = await master("--rpc_prot=1");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("unknown option '--rpc_prot=1'");
    expect(r.stderr).toContain("Usage: mooncake master");
  });

  test("a port in use is a clear error, exit 1", async () => {
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const r = await master("--rpc_address=127.0.0.1", `--rpc_port=${blocker.port}`, "--metrics_port=0", "--http_metadata_server_port=0");
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${blocker.port}`);
    } finally {
      blocker.stop(true);
    }
  });

  test("--config_path supplies values; flags win over it", async () => {
    const file = `/tmp/mooncake-master-${process.pid}.json`;
    await Bun.write(file, JSON.stringify({ default_kv_lease_ttl: 2000, eviction_ratio: 0.2, some_mooncake_only_flag: 1 }));
    const m = await startMaster(`--config_path=${file}`, "--eviction_ratio=0.3");
    const line = m.process.stderr().split("\n").find((l) => l.includes("Master service started"))!;
    expect(line).toContain("default_kv_lease_ttl=2000");
    expect(line).toContain("eviction_ratio=0.3");
    m.process.kill();
  });
});
