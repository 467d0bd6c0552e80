// A store client over RDMA for tests/integration/rdma.test.ts, run as its own process so the fake
// libibverbs / libcuda it loads (MOONCAKE_LIBIBVERBS, MOONCAKE_LIBCUDA) never leak into the test
// runner. Runs one scenario against a cluster and prints one JSON line with what it saw.
// Usage: bun tests/helpers/rdma-client.ts <scenario> '<client config JSON>'

import { MooncakeStore } from "../../src/client/store.ts";
import type { DeviceSpan } from "../../src/transfer/device-memory.ts";
import { pseudoRandomBytes } from "./bytes.ts";

const [scenario, configJson] = process.argv.slice(2);
if (scenario === undefined || configJson === undefined) {
  console.error("usage: rdma-client.ts <scenario> '<client config JSON>'");
  process.exit(2);
}
const store = await MooncakeStore.setup(JSON.parse(configJson));

const MiB = 1024 * 1024;

/** Index of the first differing byte, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Counts the QPs this process creates from now on (to tell one reconnect from a storm). */
async function countQpsCreated(): Promise<{ created: number }> {
  const { RdmaNic } = await import("../../src/transfer/rdma/nic.ts");
  const counter = { created: 0 };
  const createQp = RdmaNic.prototype.createQp;
  RdmaNic.prototype.createQp = function (this: typeof RdmaNic.prototype) {
    counter.created++;
    return createQp.call(this);
  };
  return counter;
}

async function roundTrip(key: string, value: Uint8Array): Promise<{ key: string; put: number; got: number; diff: number; error: string | null }> {
  const put = await store.put(key, value);
  const into = new Uint8Array(value.length);
  const got = put === 0 ? await store.getInto(key, into) : -1;
  const error = store.lastError;
  // Each scenario leaves the pool as it found it, so the next one has room.
  await store.remove(key, true);
  return { key, put, got, diff: got === value.length ? firstDifference(value, into) : -2, error };
}

async function run(): Promise<unknown> {
  switch (scenario) {
    case "sizes": {
      const sizes = [1, 4095, 65536, 65536 + 16384, 65536 + 16385, MiB + 3, 8 * MiB, 128 * MiB];
      const results = [];
      for (const [i, n] of sizes.entries()) results.push(await roundTrip(`size-${n}`, pseudoRandomBytes(n, i + 1)));
      return results;
    }
    case "registered": {
      const buffer = new Uint8Array(16 * MiB);
      const reg = await store.registerBuffer(buffer);
      buffer.set(pseudoRandomBytes(16 * MiB, 7));
      const put = await store.putFrom("registered", buffer);
      const into = new Uint8Array(16 * MiB);
      const regInto = await store.registerBuffer(into);
      const got = await store.getInto("registered", into);
      const overlap = await store.registerBuffer(buffer.subarray(MiB, 2 * MiB));
      const overlapError = store.lastError;
      await store.remove("registered", true);
      return { reg, regInto, put, got, diff: firstDifference(buffer, into), overlap, overlapError };
    }
    case "big": {
      // Printed first so the test can act mid-transfer (take a NIC down).
      const value = pseudoRandomBytes(128 * MiB, 11);
      console.log(JSON.stringify({ started: true }));
      const t = performance.now();
      const r = await roundTrip("big", value);
      return { ...r, ms: Math.round(performance.now() - t) };
    }
    case "many": {
      const results = [];
      for (let i = 0; i < 8; i++) results.push(await roundTrip(`many-${Date.now()}-${i}`, pseudoRandomBytes(4 * MiB, 100 + i)));
      return results;
    }
    case "device": {
      const cuda = await import("../../ffi/cuda.ts");
      cuda.cudaInit();
      const size = 8 * MiB + 5;
      const src = cuda.memAlloc(0, size);
      const dst = cuda.memAlloc(0, size);
      const value = pseudoRandomBytes(size, 21);
      cuda.withDeviceContext(0, () => cuda.copyHostToDevice(src, value, size));
      const from: DeviceSpan = { device: "cuda:0", address: src, length: size };
      const into: DeviceSpan = { device: "cuda:0", address: dst, length: size };
      const register = process.env.DEVICE_REGISTER === "1";
      const reg = register ? [await store.registerBuffer(from), await store.registerBuffer(into)] : [];
      const regError = store.lastError;
      const put = await store.putFrom("device", from);
      const putError = store.lastError;
      const got = await store.getInto("device", into);
      const back = new Uint8Array(size);
      cuda.withDeviceContext(0, () => cuda.copyDeviceToHost(back, dst, size));
      // The value is ordinary bytes for a host reader too.
      const host = await store.get("device");
      await store.remove("device", true);
      return { reg, regError, put, putError, got, diff: firstDifference(value, back), hostDiff: host ? firstDifference(value, host) : -3 };
    }
    case "close-busy": {
      // Close while unregistered puts are in flight (bounce buffers held and waited for): the
      // process must not crash, and every put must settle.
      const puts = Array.from({ length: 12 }, (_, i) =>
        store.put(`busy-${Date.now()}-${i}`, new Uint8Array(8 * MiB).fill(i + 1)).then(
          (r) => r,
          (e) => `threw ${(e as Error).message}`,
        ),
      );
      await Bun.sleep(Number(process.env.CLOSE_AFTER_MS ?? "100"));
      await store.close();
      const settled = await Promise.race([Promise.all(puts), Bun.sleep(30_000).then(() => "pending")]);
      return { settled: Array.isArray(settled) ? settled.length : settled };
    }
    case "concurrent-qp-error": {
      // 32 concurrent gets on one NIC while one work request fails: one reconnect, not a storm.
      const qps = await countQpsCreated();
      const n = 32;
      const values = Array.from({ length: n }, (_, i) => pseudoRandomBytes(MiB, 300 + i));
      for (let i = 0; i < n; i++) if ((await store.put(`conc-${i}`, values[i]!)) !== 0) throw new Error(`put: ${store.lastError}`);
      const warm = await Promise.all(values.map((v, i) => store.getInto(`conc-${i}`, new Uint8Array(v.length))));
      const before = qps.created;
      const { writeFileSync } = await import("node:fs");
      writeFileSync(`${process.env.FAKEVERBS_FABRIC}/qp_error`, "");
      const intos = values.map((v) => new Uint8Array(v.length));
      const got = await Promise.all(values.map((_, i) => store.getInto(`conc-${i}`, intos[i]!)));
      for (let i = 0; i < n; i++) await store.remove(`conc-${i}`, true);
      return { warm: warm.every((x) => x === MiB), ok: got.filter((x, i) => x === MiB && firstDifference(values[i]!, intos[i]!) === -1).length, qpsCreated: qps.created - before };
    }
    case "two-nodes": {
      // Round trips spread over two nodes with room for one endpoint: each switch retires the
      // least recently used endpoint and connects again; every byte still arrives.
      const qps = await countQpsCreated();
      const results = [];
      for (let i = 0; i < 24; i++) results.push(await roundTrip(`two-${Date.now()}-${i}`, pseudoRandomBytes(256 * 1024, 400 + i)));
      return { ok: results.filter((r) => r.put === 0 && r.diff === -1).length, qpsCreated: qps.created };
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

try {
  console.log(JSON.stringify(await run()));
} finally {
  await store.close(); // a second close (close-busy) is a no-op
}
process.exit(0);
