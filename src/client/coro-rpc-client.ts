// A coro_rpc client for Mooncake's master protocol, written in TypeScript: it speaks to a master
// exactly as Mooncake's C++ MasterClient does (coro-rpc-golden.md), so tests and examples can prove
// that unmodified Mooncake clients work against `mooncake master`. Calls may be pipelined; replies
// are matched by seq_num. Our own tools use MasterClient (protobuf frames); this one is for
// compatibility checks and the coro_rpc side of `bench`-style probes, not for production traffic.

import { CoroErrc, CoroFrameReader, type CoroResponse, decodeErrorBody, encodeRequest } from "../core/coro-rpc/frame.ts";
import { type CoroRpcName, MOONCAKE_RPCS, valueFromArgs } from "../core/coro-rpc/mooncake-rpcs.ts";
import type { ErrorCodeValue } from "../core/errors.ts";
import { decode, encode } from "../core/struct-pack/codec.ts";
import { type Connection, connectTcp } from "../runtime/tcp.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";
import type { DataPath } from "./data-path.ts";
import { parseHostPort } from "./master-client.ts";

/** A coro_rpc-level failure: err_code ≠ 0 in the response header (not a Mooncake ErrorCode). */
export class CoroRpcError extends Error {
  constructor(
    readonly errCode: number,
    message: string,
  ) {
    super(`coro_rpc error ${errCode}: ${message}`);
    this.name = "CoroRpcError";
  }
}

/** Mooncake's default ReplicateConfig (replica_num 1), with all 13 fields as its client sends them. */
export function defaultReplicateConfig(replicaNum = 1) {
  return {
    replica_num: replicaNum,
    nof_replica_num: 0,
    dfs_replica_num: 0,
    soft_pin_action: 0,
    soft_pin_ttl_ms: null,
    with_hard_pin: false,
    preferred_segments: [],
    preferred_segment: "",
    preferred_nof_segments: [],
    prefer_alloc_in_same_node: false,
    data_type: 0,
    host_id: "",
    group_ids: null,
  };
}

/** A memory replica's buffer as a Mooncake client reads it from a Replica::Descriptor. */
export interface CoroBuffer {
  size_: number;
  buffer_address_: number;
  protocol_: string;
  transport_endpoint_: string;
}

interface CoroReplica {
  id: number;
  descriptor_variant: { index: number; value: { buffer_descriptor?: CoroBuffer } };
  status: number;
}

type Expected<T> = { ok: true; value: T } | { ok: false; code: ErrorCodeValue };

export class CoroRpcClient {
  private readonly reader = new CoroFrameReader<CoroResponse>("response");
  private readonly pending = new Map<number, { resolve(r: CoroResponse): void; reject(e: Error): void }>();
  private nextSeq = 0;
  private closedError: Error | null = null;

  private constructor(
    private readonly connection: Connection,
    readonly address: string,
    private readonly timeoutMs: number,
  ) {}

  /** Connects and checks ServiceReady's version, as Mooncake's MasterClient::Connect does. */
  static async connect(address: string, options: { timeoutMs?: number } = {}): Promise<CoroRpcClient> {
    const { host, port } = parseHostPort(address);
    let client: CoroRpcClient | null = null;
    const connection = await connectTcp(
      host,
      port,
      {
        onData: (_, chunk) => client?.onData(chunk),
        onClose: (_, reason) => client?.fail(new Error(`connection to ${address} closed${reason ? `: ${reason}` : ""}`)),
      },
      { timeoutMs: options.timeoutMs ?? 5000 },
    );
    client = new CoroRpcClient(connection, address, options.timeoutMs ?? 5000);
    const ready = (await client.call("ServiceReady", {})) as Expected<string>;
    if (!ready.ok || ready.value !== STORE_PROTOCOL_VERSION) {
      client.close();
      throw new Error(`master ${address} answered ServiceReady with ${JSON.stringify(ready)}, want ${STORE_PROTOCOL_VERSION}`);
    }
    return client;
  }

  /** Calls `name` with its arguments by Mooncake's names; resolves with the decoded return value. */
  async call(name: CoroRpcName, args: Record<string, unknown>): Promise<unknown> {
    const rpc = MOONCAKE_RPCS[name];
    const body = rpc.args === null ? new Uint8Array(0) : encode(rpc.args, valueFromArgs(rpc, args));
    const response = await this.callRaw(rpc.id, body);
    if (response.errCode !== CoroErrc.ok) throw new CoroRpcError(response.errCode, decodeErrorBody(response.body));
    return decode(rpc.result, response.body);
  }

  /** Sends one request with any function id and body (tests use it to send what no client would). */
  callRaw(functionId: number, body: Uint8Array): Promise<CoroResponse> {
    if (this.closedError) return Promise.reject(this.closedError);
    const seq = this.nextSeq;
    this.nextSeq = (this.nextSeq + 1) >>> 0;
    return new Promise<CoroResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`coro_rpc call ${seq} to ${this.address} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(seq, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.connection.send(encodeRequest(seq, functionId, body));
    });
  }

  /** Writes raw bytes on the connection (for tests of broken peers). */
  sendBytes(bytes: Uint8Array): boolean {
    return this.connection.send(bytes);
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  close() {
    this.fail(new Error(`client for ${this.address} closed`));
    this.connection.close();
  }

  private onData(chunk: Uint8Array) {
    let responses: CoroResponse[];
    try {
      responses = this.reader.push(chunk);
    } catch (e) {
      this.close();
      this.fail(e as Error);
      return;
    }
    for (const r of responses) {
      const waiter = this.pending.get(r.seq);
      if (!waiter) continue;
      this.pending.delete(r.seq);
      waiter.resolve({ ...r, body: r.body.slice() });
    }
  }

  private fail(error: Error) {
    this.closedError ??= error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }
}

/**
 * A put the way Mooncake's store client does it: PutStart, the bytes to every replica with the
 * transfer engine, PutEnd; PutRevoke if a transfer fails. Returns 0 or the ErrorCode.
 */
export async function coroPut(
  client: CoroRpcClient,
  data: DataPath,
  clientId: string,
  key: string,
  value: Uint8Array,
  replicaNum = 1,
): Promise<number> {
  const started = (await client.call("PutStart", {
    client_id: clientId,
    key,
    slice_length: value.length,
    config: defaultReplicateConfig(replicaNum),
    tenant_id: "default",
  })) as Expected<CoroReplica[]>;
  if (!started.ok) return started.code;
  try {
    await Promise.all(
      started.value.map((replica) => {
        const buffer = memoryBuffer(replica);
        return data.write(buffer.transport_endpoint_, buffer.buffer_address_, value);
      }),
    );
  } catch (e) {
    await client.call("PutRevoke", { client_id: clientId, key, replica_type: 4, tenant_id: "default" });
    throw e;
  }
  const ended = (await client.call("PutEnd", {
    client_id: clientId,
    object_meta: { key, object_checksum: null },
    replica_type: 4,
    tenant_id: "default",
  })) as Expected<undefined>;
  return ended.ok ? 0 : ended.code;
}

/** A get the way Mooncake's store client does it: GetReplicaList, then read the first replica. */
export async function coroGet(
  client: CoroRpcClient,
  data: DataPath,
  key: string,
): Promise<{ ok: true; value: Uint8Array } | { ok: false; code: number }> {
  const list = (await client.call("GetReplicaList", { key, tenant_id: "default" })) as Expected<{
    replicas: CoroReplica[];
  }>;
  if (!list.ok) return list;
  const buffer = memoryBuffer(list.value.replicas[0]!);
  const into = new Uint8Array(buffer.size_);
  await data.read(buffer.transport_endpoint_, buffer.buffer_address_, into);
  return { ok: true, value: into };
}

function memoryBuffer(replica: CoroReplica): CoroBuffer {
  const buffer = replica.descriptor_variant.value.buffer_descriptor;
  if (replica.descriptor_variant.index !== 0 || !buffer) {
    throw new Error(`replica ${replica.id} is not a memory replica (variant ${replica.descriptor_variant.index})`);
  }
  return buffer;
}
