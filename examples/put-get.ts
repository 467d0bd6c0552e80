// Put and get a 32 MiB value (one 256-token chunk of Llama-3.1-8B's KV cache in bf16) through a
// running cluster. Start one with `dist/mooncake up`, then: bun examples/put-get.ts
// The client reads the same configuration as every mooncake command: MOONCAKE_* env, an LMCache
// YAML in LMCACHE_CONFIG_FILE, or the overrides given to setup().

import { errorName, MooncakeStore } from "../src/index.ts";

const store = await MooncakeStore.setup({
  master_server_address: process.env.MOONCAKE_MASTER ?? "127.0.0.1:50051",
  metadata_server: process.env.MOONCAKE_TE_META_DATA_SERVER ?? "http://127.0.0.1:8080/metadata",
  local_hostname: "127.0.0.1",
});

const key = "meta-llama/Llama-3.1-8B-Instruct@1@0@1f3a9c@bfloat16";
const value = new Uint8Array(32 * 1024 * 1024);
crypto.getRandomValues(value.subarray(0, 65536)); // some non-zero bytes to check
value.set(value.subarray(0, 65536), value.length - 65536);

let started = performance.now();
const code = await store.put(key, value);
if (code !== 0) throw new Error(`put failed: ${errorName(code)}`);
console.log(`put ${value.length} bytes in ${(performance.now() - started).toFixed(1)} ms`);

started = performance.now();
const read = await store.get(key);
console.log(`get ${read?.length ?? 0} bytes in ${(performance.now() - started).toFixed(1)} ms`);
const identical = read !== null && Buffer.compare(Buffer.from(read), Buffer.from(value)) === 0;
console.log(identical ? "identical bytes" : "DIFFERENT BYTES");

await store.remove(key, true);
await store.close();
process.exit(identical ? 0 : 1);
