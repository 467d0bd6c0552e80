// The work of `mooncake kv …` (registered in kv.ts): connect a MooncakeStore with the shared config,
// do one operation, close the store so the process can exit. Exit codes: 0 ok, 1 failed or missing,
// 2 usage, 3 the master did not answer (RPC_FAIL / RPC_TIMEOUT, or the admin HTTP for `ls`).

import { ConfigError } from "../config/errors.ts";
import { CONFIG_KEYS, type ConfigKey } from "../config/schema.ts";
import { ErrorCode, errorName, MooncakeError } from "../core/errors.ts";
import { escapeKey, keyPreview } from "../core/key-display.ts";
import { invalidKeyReason } from "../core/master/objects.ts";
import { formatBytes } from "../core/units.ts";
import type { MooncakeStore } from "../client/store.ts";
import type { DeviceSpan } from "../transfer/device-memory.ts";
import { adminBaseUrlFor, listKeys, UnreachableError, withUnreachableExit } from "./admin-http.ts";
import { loadCommandConfig } from "./config-options.ts";
import { EXIT } from "./exit-codes.ts";
import { KV_CONFIG_KEYS } from "./kv.ts";

/** Largest value `kv put` reads into memory. */
export const MAX_VALUE_BYTES = 1024 ** 3;

export async function runKv(verb: string, args: (string | undefined)[], options: Record<string, unknown>): Promise<void> {
  const timeoutMs = options.timeout as number;
  if (verb === "ls") {
    const { config } = loadCommandConfig(options, ["master_server_address"], { command: "mooncake kv ls" });
    await withUnreachableExit(async () => {
      const base = await adminBaseUrlFor(options.admin as string | undefined, config.master_server_address, timeoutMs);
      const regex = typeof options.regex === "string" ? new RegExp(options.regex) : null;
      const { keys } = await listKeys(base, { regex, limit: options.limit as number, timeoutMs });
      // One key per line, always: control characters and `\` escaped (kv.ts's help says how).
      if (keys.length > 0) process.stdout.write(`${keys.map(escapeKey).join("\n")}\n`);
    });
    return;
  }

  const key = args[0]!;
  // A key the master refuses whatever its state: a usage error, said before connecting.
  const invalid = invalidKeyReason(key);
  if (invalid !== null) throw new ConfigError(`kv ${verb}: ${invalid}`);
  // Read the value before connecting: a usage problem (missing file, too large) needs no master.
  const value = verb === "put" ? await readValue(args[1]) : null;
  const loaded = loadCommandConfig(options, KV_CONFIG_KEYS, { command: `mooncake kv ${verb}` });
  const overrides: Partial<Record<ConfigKey, unknown>> = {};
  for (const k of CONFIG_KEYS) if (loaded.sources[k].kind !== "default") overrides[k] = loaded.config[k];
  // A client serves nothing, so its name only labels it; Mooncake's "localhost" default is for nodes.
  if (loaded.sources.local_hostname.kind === "default") overrides.local_hostname = "127.0.0.1";
  overrides.rpc_connect_timeout_ms = timeoutMs;

  const device = typeof options.device === "string" ? await openDevice(options.device, verb, loaded.config.protocol === "rdma") : null;
  await withUnreachableExit(async () => {
    const store = await connect(overrides, loaded.config.master_server_address, timeoutMs);
    try {
      switch (verb) {
        case "put":
          return await put(store, key, value!, device);
        case "get":
          return await get(store, key, options.output as string | undefined, device);
        case "rm":
          return await rm(store, key, options.force === true);
        case "exists":
          return await exists(store, key, options.verbose === true);
        default:
          throw new Error(`unknown kv subcommand ${verb}`);
      }
    } finally {
      await store.close();
    }
  });
}

/** MooncakeStore.setup with a deadline on reaching the master (connect and ServiceReady). */
async function connect(overrides: Partial<Record<ConfigKey, unknown>>, master: string, timeoutMs: number): Promise<MooncakeStore> {
  const { MooncakeStore } = await import("../client/store.ts");
  const setup = MooncakeStore.setup(overrides).catch((e: unknown) => {
    if (e instanceof MooncakeError && e.code === ErrorCode.INVALID_PARAMS) throw new ConfigError(e.message);
    throw e;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // If setup still succeeds later, let go of it.
      setup.then((s) => s.close()).catch(() => {});
      reject(new UnreachableError(`master ${master} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([setup, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fails a result code: exit 3 for RPC failures (the master stopped answering), else 1 with the reason. */
function failed(verb: string, key: string, code: number, hint = "", store: MooncakeStore | null = null): number {
  const shown = keyPreview(key);
  if (code === ErrorCode.RPC_FAIL || code === ErrorCode.RPC_TIMEOUT) {
    process.stderr.write(`mooncake: kv ${verb} ${shown}: the master did not answer (${errorName(code)})\n`);
    return EXIT.UNREACHABLE;
  }
  // The client's own account of this failure (for a transfer: peer, step and cause), when it has one.
  const detail = store?.lastError ?? null;
  const told = detail?.startsWith(errorName(code)) ? detail : errorName(code);
  const reason = code === ErrorCode.OBJECT_NOT_FOUND ? "no such key" : told;
  process.stderr.write(`mooncake: kv ${verb} ${shown}: ${reason}${hint}\n`);
  return EXIT.FAILURE;
}

async function readValue(file: string | undefined): Promise<Uint8Array> {
  let bytes: Uint8Array;
  if (file === undefined || file === "-") {
    if (process.stdin.isTTY) process.stderr.write("mooncake: reading the value from stdin (end with Ctrl-D)\n");
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of Bun.stdin.stream()) {
      total += chunk.length;
      if (total > MAX_VALUE_BYTES) throw new ConfigError(`kv put: the value on stdin is over ${formatBytes(MAX_VALUE_BYTES)}`);
      chunks.push(chunk);
    }
    bytes = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
  } else {
    const f = Bun.file(file);
    if (!(await f.exists())) throw new ConfigError(`kv put: ${file}: no such file`);
    if (f.size > MAX_VALUE_BYTES) {
      throw new ConfigError(`kv put: ${file} is ${formatBytes(f.size)}, over the ${formatBytes(MAX_VALUE_BYTES)} limit`);
    }
    bytes = await f.bytes();
  }
  if (bytes.length === 0) throw new ConfigError("kv put: the value is empty (an object needs at least one byte)");
  return bytes;
}

/** `--device cuda:N`: the GPU a put copies its value to first, or a get reads into. */
interface KvDevice {
  name: string;
  cuda: typeof import("../../ffi/cuda.ts");
  ordinal: number;
  /** Register the device buffer for GPUDirect (protocol rdma). */
  register: boolean;
}

async function openDevice(name: string, verb: string, register: boolean): Promise<KvDevice> {
  if (verb !== "put" && verb !== "get") throw new ConfigError(`kv ${verb}: --device is for put and get`);
  const { checkCudaDevice } = await import("./device-checks.ts");
  const ordinal = await checkCudaDevice(`kv ${verb} --device`, name);
  return { name, cuda: await import("../../ffi/cuda.ts"), ordinal, register };
}

/** Runs `use` with `sizeBytes` of device memory (registered when asked), freed afterwards. */
async function withDeviceBuffer<T>(store: MooncakeStore, d: KvDevice, sizeBytes: number, use: (span: DeviceSpan) => Promise<T>): Promise<T> {
  const span: DeviceSpan = { device: d.name, address: d.cuda.memAlloc(d.ordinal, sizeBytes), length: sizeBytes };
  try {
    if (d.register && (await store.registerBuffer(span)) !== ErrorCode.OK) throw new Error(store.lastError ?? "registerBuffer failed");
    return await use(span);
  } finally {
    if (d.register) store.unregisterBuffer(span);
    d.cuda.memFree(span.address);
  }
}

async function put(store: MooncakeStore, key: string, value: Uint8Array, device: KvDevice | null): Promise<number> {
  const code =
    device === null
      ? await store.put(key, value)
      : await withDeviceBuffer(store, device, value.length, (span) => {
          device.cuda.withDeviceContext(device.ordinal, () => device.cuda.copyHostToDevice(span.address, value, value.length));
          return store.putFrom(key, span);
        });
  return code === ErrorCode.OK ? EXIT.OK : failed("put", key, code, "", store);
}

async function get(store: MooncakeStore, key: string, output: string | undefined, device: KvDevice | null): Promise<number> {
  // getSize tells a missing key from a failed read, which get() (null for both) does not.
  const size = await store.getSize(key);
  if (size < 0) return failed("get", key, size);
  const into = new Uint8Array(size);
  const n =
    device === null
      ? await store.getInto(key, into)
      : await withDeviceBuffer(store, device, size, async (span) => {
          const got = await store.getInto(key, span);
          if (got > 0) device.cuda.withDeviceContext(device.ordinal, () => device.cuda.copyDeviceToHost(into, span.address, got));
          return got;
        });
  if (n < 0) return failed("get", key, n, "", store);
  const bytes = into.subarray(0, n);
  if (output !== undefined && output !== "-") await Bun.write(output, bytes);
  else await Bun.write(Bun.stdout, bytes);
  return EXIT.OK;
}

async function rm(store: MooncakeStore, key: string, force: boolean): Promise<number> {
  const code = await store.remove(key, force);
  if (code === ErrorCode.OK) return EXIT.OK;
  return failed("rm", key, code, code === ErrorCode.OBJECT_HAS_LEASE ? " (a reader holds a lease; --force removes it anyway)" : "");
}

async function exists(store: MooncakeStore, key: string, verbose: boolean): Promise<number> {
  const r = await store.isExist(key);
  if (r < 0) return failed("exists", key, r);
  const shown = keyPreview(key);
  if (verbose) process.stdout.write(r === 1 ? `${shown}: exists\n` : `${shown}: does not exist\n`);
  return r === 1 ? EXIT.OK : EXIT.FAILURE;
}
