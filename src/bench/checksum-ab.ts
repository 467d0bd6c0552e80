// What the end-to-end value checksum (store_checksum, src/core/checksum.ts) costs at 32 MiB: one
// store node in its own process, two clients in this one (checksum on and off), put and get
// rounds alternating between them over TCP and over same-host shared memory; medians and ratios.
// Not a test. Run: bun src/bench/checksum-ab.ts [--rounds 40]

import { MooncakeStore } from "../client/store.ts";
import { configureLog } from "../core/log.ts";
import { keepFreedMemory } from "../runtime/allocator.ts";
import { startBenchMaster, startBenchNode } from "./bench-cluster.ts";

keepFreedMemory();
configureLog({ level: "warn" });
const MiB = 1024 * 1024;
const roundsAt = process.argv.indexOf("--rounds");
const rounds = roundsAt >= 0 ? Number(process.argv[roundsAt + 1]) : 40;

const master = await startBenchMaster();
const masterAddress = `127.0.0.1:${master.rpcPort}`;
const metadata = `http://127.0.0.1:${master.metadataPort}/metadata`;
const node = await startBenchNode(masterAddress, metadata, 1024 * MiB);
const client = (memcpy: "auto" | "off", checksum: boolean) =>
  MooncakeStore.setup({ master_server_address: masterAddress, metadata_server: metadata, local_hostname: "127.0.0.1", store_memcpy: memcpy, store_checksum: checksum, transfer_timeout: 30 });

const value = new Uint8Array(32 * MiB);
for (let i = 0; i < value.length; i += 4096) value[i] = i & 0xff;
const into = new Uint8Array(32 * MiB);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  for (const path of ["tcp", "shm"] as const) {
    const on = await client(path === "tcp" ? "off" : "auto", true);
    const off = await client(path === "tcp" ? "off" : "auto", false);
    const ms = { on: { put: [] as number[], get: [] as number[] }, off: { put: [] as number[], get: [] as number[] } };
    // Warm both (connections, receive buffers), then alternate so both see the same machine.
    for (const s of [on, off]) for (let i = 0; i < 4; i++) {
      await s.put(`warm-${i}`, value);
      await s.getInto(`warm-${i}`, into);
      await s.remove(`warm-${i}`, true);
    }
    for (let r = 0; r < rounds; r++) {
      for (const [name, s] of [["on", on], ["off", off]] as const) {
        const key = `${path}-${name}-${r}`;
        let t = performance.now();
        if ((await s.put(key, value)) !== 0) throw new Error(`put ${key} failed: ${s.lastError}`);
        ms[name].put.push(performance.now() - t);
        t = performance.now();
        if ((await s.getInto(key, into)) !== value.length) throw new Error(`get ${key} failed: ${s.lastError}`);
        ms[name].get.push(performance.now() - t);
        await s.remove(key, true);
      }
    }
    for (const op of ["put", "get"] as const) {
      const a = median(ms.on[op]);
      const b = median(ms.off[op]);
      console.log(JSON.stringify({ path, op, rounds, checksumOnMs: +a.toFixed(2), checksumOffMs: +b.toFixed(2), cost: `${(((a - b) / b) * 100).toFixed(1)} %` }));
    }
    await on.close();
    await off.close();
  }
} finally {
  node.proc.kill();
  master.proc.kill();
}
