// Transfer engines over the fake fabric without a master, for tests/integration/rdma.test.ts:
// serving engines with one 64 MiB segment each and a client engine, all in this process (run it as
// a child: the fake libibverbs must not load into the test runner). Prints one JSON line.
// Usage: bun tests/helpers/rdma-engine.ts <scenario>  (MOONCAKE_LIBIBVERBS, FAKEVERBS_FABRIC set)

import { addressOf } from "../../ffi/libc.ts";
import { loadConfig } from "../../src/config/load.ts";
import { TransferEngine, TransferStatus } from "../../src/transfer/engine.ts";
import { SharedSegment } from "../../src/transfer/shared-memory.ts";

const MiB = 1024 * 1024;
const flags = { local_hostname: "127.0.0.1", metadata_server: "P2PHANDSHAKE", protocol: "rdma", store_memcpy: "off", device_name: "fake_0", transfer_timeout: 5 };
const server = await TransferEngine.start({ config: loadConfig({ env: {}, flags }).config, serve: true });
const segment = SharedSegment.create(`rdma-engine-${process.pid}`, 64 * MiB);
server.registerSegment(segment);
await server.publish();
const client = await TransferEngine.start({ config: loadConfig({ env: {}, flags }).config, serve: false });
const name = server.name;

async function run(scenario: string | undefined): Promise<unknown> {
  switch (scenario) {
    case "many-jobs": {
      // Far more single-slice jobs than a NIC has slots: they wait, none fails.
      const n = 5000;
      const local = new Uint8Array(n * 4096).fill(7);
      client.registerBuffer(local);
      await client.write(name, segment.address, local.subarray(0, 4096));
      const base = addressOf(local);
      const batch = client.allocateBatchId(n);
      client.submitTransfer(
        batch,
        Array.from({ length: n }, (_, i) => ({
          opcode: 1 as const,
          source: base + i * 4096,
          targetSegment: name,
          targetOffset: segment.address + ((i * 4096) % (60 * MiB)),
          lengthBytes: 4096,
        })),
      );
      const statuses = await client.waitBatch(batch);
      return { failed: statuses.filter((s) => s !== TransferStatus.COMPLETED).length };
    }
    case "one-bad-among-many": {
      // One request outside the peer's buffer must not fail the valid ones running beside it.
      await client.write(name, segment.address, new Uint8Array(4096));
      const size = 4 * MiB;
      const valid = Array.from({ length: 10 }, (_, i) =>
        client.write(name, segment.address + i * size, new Uint8Array(size).fill(i + 1)).then(
          () => "ok",
          (e) => (e as Error).message,
        ),
      );
      const bad = client.write(name, segment.address + 64 * MiB, new Uint8Array(4096)).then(
        () => "ok",
        (e) => (e as Error).message,
      );
      const results = await Promise.all(valid);
      const view = segment.view(0, 10 * size);
      const bytesRight = results.every((_, i) => view[i * size] === i + 1 && view[i * size + size - 1] === i + 1);
      return { valid: results.filter((r) => r === "ok").length, bad: await bad, bytesRight };
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

try {
  console.log(JSON.stringify(await run(process.argv[2])));
} finally {
  await client.close();
  await server.close();
  segment.close();
}
process.exit(0);
