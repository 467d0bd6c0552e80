// Put and get a 32 MiB value the way an unmodified Mooncake client does (LMCache's
// mooncakestore:// connector, vLLM, SGLang): coro_rpc + struct_pack to the master's port 50051,
// segment descriptors from the HTTP metadata server, bytes over the transfer engine's TCP protocol.
// It proves `mooncake master` can stand in for `mooncake_master` (docs/PROTOCOLS.md).
// Start a cluster with `dist/mooncake up`, then: bun examples/coro-rpc-put-get.ts
// MOONCAKE_MASTER and MOONCAKE_TE_META_DATA_SERVER point it elsewhere.

import { coroGet, coroPut, CoroRpcClient } from "../src/client/coro-rpc-client.ts";
import { randomUuid, uuidToString } from "../src/core/rpc/methods.ts";
import { errorName } from "../src/index.ts";
import { loadConfig } from "../src/config/load.ts";
import { createEngineDataPath } from "../src/transfer/engine.ts";

const masterAddress = process.env.MOONCAKE_MASTER ?? "127.0.0.1:50051";
const { config } = loadConfig({
  flags: {
    master_server_address: masterAddress,
    metadata_server: process.env.MOONCAKE_TE_META_DATA_SERVER ?? "http://127.0.0.1:8080/metadata",
    local_hostname: "127.0.0.1",
    // A Mooncake client on another host moves bytes over TCP; do the same here.
    store_memcpy: process.env.MOONCAKE_STORE_MEMCPY ?? "off",
  },
  command: "examples/coro-rpc-put-get.ts",
});

const master = await CoroRpcClient.connect(masterAddress, { timeoutMs: 10_000 });
console.log(`coro_rpc: ServiceReady OK (store version 2.0.0) from ${masterAddress}`);
const data = await createEngineDataPath(config);
const clientId = uuidToString(randomUuid());

const key = process.env.KEY ?? "coro/meta-llama/Llama-3.1-8B-Instruct@1@0@1f3a9c@bfloat16";
const value = new Uint8Array(32 * 1024 * 1024);
crypto.getRandomValues(value.subarray(0, 65536));
value.set(value.subarray(0, 65536), value.length - 65536);

let identical = false;
try {
  let started = performance.now();
  const code = await coroPut(master, data, clientId, key, value);
  if (code !== 0) throw new Error(`put failed: ${errorName(code)}`);
  console.log(`put ${value.length} bytes in ${(performance.now() - started).toFixed(1)} ms (PutStart, TCP write, PutEnd)`);

  started = performance.now();
  const read = await coroGet(master, data, key);
  if (!read.ok) throw new Error(`get failed: ${errorName(read.code)}`);
  console.log(`get ${read.value.length} bytes in ${(performance.now() - started).toFixed(1)} ms (GetReplicaList, TCP read)`);
  identical = Buffer.compare(Buffer.from(read.value), Buffer.from(value)) === 0;
  console.log(identical ? "identical bytes" : "DIFFERENT BYTES");
  await master.call("Remove", { key, force: true, tenant_id: "default" });
} finally {
  master.close();
  await data.close();
}
process.exit(identical ? 0 : 1);
