// A client process for tests/integration/small-puts.test.ts, killed by the test (or by itself) at
// awkward moments of the small-value put path. Writes what it did to stderr, one line per event.
//
//   bun small-put-child.ts <master> <metadata> write-then-die   reserve, write, SIGKILL itself before PutCommit
//   bun small-put-child.ts <master> <metadata> loop <prefix>    small puts until killed: "acked <key>" per put

import { MasterClient } from "../../src/client/master-client.ts";
import { MooncakeStore } from "../../src/client/store.ts";
import { loadConfig } from "../../src/config/load.ts";
import { randomUuid } from "../../src/core/rpc/methods.ts";
import { createEngineDataPath } from "../../src/transfer/engine.ts";
import { valueFor } from "./small-put-values.ts";

const [masterAddress, metadataServer, mode, prefix = "child"] = process.argv.slice(2);
const flags = { master_server_address: masterAddress, metadata_server: metadataServer, local_hostname: "127.0.0.1", store_memcpy: "off" };

if (mode === "write-then-die") {
  const { config } = loadConfig({ flags, command: "small-put-child" });
  const master = await MasterClient.connect(config.master_server_address, { timeoutMs: 5000 });
  const data = await createEngineDataPath(config, null);
  const clientId = randomUuid();
  const reply = await master.call("putReserve", { clientId, size: 1 << 20 });
  const b = reply.replica!.memory!.bufferDescriptor!;
  await data.write(b.transportEndpoint!, Number(b.bufferAddress), valueFor("never-committed", 4096));
  console.error(`written ${reply.reservationId}`);
  process.kill(process.pid, "SIGKILL");
} else if (mode === "loop") {
  const store = await MooncakeStore.setup(flags);
  console.error("ready");
  for (let i = 0; i < 1_000_000; i++) {
    const key = `${prefix}-${i}`;
    const code = await store.put(key, valueFor(key, 512 + (i % 8) * 1000));
    if (code !== 0) console.error(`failed ${key} ${code}`);
    else console.error(`acked ${key}`);
  }
}
