// Seeded fuzzing of every decoder that reads bytes from a peer or from disk (issue 19, item 5).
// Each decoder gets its seeds (valid encodings from its own encoder and the golden vectors the
// module tests use), every truncation of the short ones, then mutated inputs within a fixed
// budget. It must decode or fail with the error type it documents; streaming readers are also
// fed the bytes in random chunks and must agree with a one-chunk read, and keep failing once they
// have failed. Cheap invariants of decoded values (lengths within the input, re-encoding round
// trips) are checked too. Budget and seed: tests/fuzz/harness.ts (FUZZ_MS, FUZZ_SEED,
// FUZZ_INPUTS); `scripts/fuzz` runs the same suite for about 10^6 inputs per decoder.
//
// Which errors count as clean:
//   master RPC frames            FrameError
//   hand-written protobuf        ProtoError (BatchPutStartRequest: also protobufjs' errors, from the
//                                generated ReplicateConfig decoder it calls for the config field)
//   protobufjs generated code    Error/RangeError with one of protobufjs' reader messages (see
//                                PROTOBUFJS_MESSAGES), and the TypeError of the runtime's fatal
//                                TextDecoder: protobufjs 8 rejects a proto3 string field that is
//                                not UTF-8 (Reader#stringVerify). Any other error is a finding
//   coro_rpc frames              CoroFrameError;  struct_pack bodies: StructPackError
//   TCP data port                RangeError "needs 24/8 bytes", only when the input is that short
//   handshake frames             HandshakeFrameError;  segment descriptors: SegmentDescriptorError
//   RESP                         RespProtocolError;  lm:// requests/replies: LmProtocolError
//   lm:// stored objects, disk record headers and the bucket scanner: nothing (null / damaged)

import { describe, expect, test } from "bun:test";
import { crc32Update } from "../../src/core/checksum.ts";
import { decodeErrorBody as decodeCoroErrorBody, CoroFrameError, CoroFrameReader, type CoroRequest, type CoroResponse } from "../../src/core/coro-rpc/frame.ts";
import { GOLDEN_EXCHANGES } from "../../src/core/coro-rpc/golden-vectors.ts";
import { CORO_RPC_BY_ID, type CoroRpcName, MOONCAKE_RPCS } from "../../src/core/coro-rpc/mooncake-rpcs.ts";
import {
  decodeHeader,
  encodeHeader,
  MAX_KEY_BYTES,
  MIN_SCAN_BUFFER_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  RecordKind,
  recordCrcOf,
  recordLength,
  scanRecords,
  type ScannedRecord,
} from "../../src/core/disk/bucket-record.ts";
import {
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  LmProtocolError,
  LmRequestReader,
  statusReply,
} from "../../src/core/lm/protocol.ts";
import { decodeStored, encodeStoredHeader } from "../../src/core/lm/stored.ts";
import { encode as respEncode, RespParser, RespProtocolError } from "../../src/core/resp/codec.ts";
import { decodeErrorBody, encodeErrorBody, encodeFrames, ERROR_METHOD, type Frame, FrameError, FrameReader } from "../../src/core/rpc/frame.ts";
import {
  decodeBatchErrorCodes,
  decodeBatchExist,
  decodeBatchPutEndRequest,
  decodeBatchPutStartRequest,
  decodeBatchReplicaList,
  decodeBatchResultCodes,
  decodeKeyListRequest,
  decodeReplicaList,
  encodeKeyListRequest,
  ProtoError,
} from "../../src/core/rpc/hot-decoding.ts";
import { METHODS, pb } from "../../src/core/rpc/methods.ts";
import { decode as spDecode, encode as spEncode, StructPackError } from "../../src/core/struct-pack/codec.ts";
import { sp, type SpType } from "../../src/core/struct-pack/types.ts";
import {
  decodeHandshakeFrame,
  DEFAULT_HANDSHAKE_MAX_LENGTH,
  encodeHandshakeFrame,
  type HandshakeFrame,
  HandshakeFrameError,
  HandshakeFrameReader,
  HandshakeType,
  LEGACY_FRAME_TYPE,
} from "../../src/core/transfer/handshake-frame.ts";
import {
  decodeRpcMeta,
  decodeSegmentDescriptor,
  encodeRpcMeta,
  encodeSegmentDescriptor,
  SegmentDescriptorError,
} from "../../src/core/transfer/segment-descriptor.ts";
import {
  decodeSessionHeader,
  decodeStatusFrame,
  encodeSessionHeader,
  encodeStatusFrame,
  OP_READ,
  OP_WRITE,
  PROTO_V2_FLAG,
  SESSION_HEADER_BYTES,
  STATUS_FRAME_BYTES,
} from "../../src/core/transfer/tcp-wire.ts";
import { FUZZ_SEED, type FuzzTarget, fuzzTest, InvariantError, invariant } from "./harness.ts";
import { fromHex, mutate, mutateJsonText, Rng, randomChunks, toHex } from "./mutate.ts";
import { randomMessage, readSchema } from "./proto-seeds.ts";
import { GOLDEN_RAM, GOLDEN_RPC, RDMA_JSON } from "../../src/core/transfer/golden-descriptors.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}


/**
 * Feeds `chunks` to a streaming reader whose `push` throws once on bad bytes. Returns what came
 * out and the error, after checking that the reader keeps failing (a non-empty chunk after the
 * error throws again, with an allowed error).
 */
function pushAll<F>(push: (chunk: Uint8Array) => F[], chunks: readonly Uint8Array[], rng: Rng, allowed: (e: unknown) => boolean) {
  const frames: F[] = [];
  for (const chunk of chunks) {
    try {
      frames.push(...push(chunk));
    } catch (e) {
      if (!allowed(e)) throw e;
      let again: unknown = null;
      try {
        push(rng.bytes(rng.range(1, 32)));
      } catch (e2) {
        again = e2;
      }
      invariant(again !== null && allowed(again), `after ${String(e)}, the next chunk was accepted (${String(again)}): the reader resynchronised on garbage`);
      return { frames, error: e as Error };
    }
  }
  return { frames, error: null };
}

describe("fuzz: the mutator", () => {
  test("is deterministic for a seed, and bounded by maxBytes", () => {
    const seed = te.encode("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    const run = (s: number) => {
      const rng = new Rng(s);
      return Array.from({ length: 200 }, () => toHex(mutate(rng, seed, { corpus: [seed], maxBytes: 256 })));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
    for (const hex of run(9)) expect(hex.length / 2).toBeLessThanOrEqual(256);
    const chunks = randomChunks(new Rng(3), seed);
    expect(toHex(concat(chunks))).toBe(toHex(seed));
  });
});

// ---------------------------------------------------------------------------------------------
// Master RPC: frames, hand-written protobuf, protobufjs

const schema = readSchema();

function protoSeeds(rng: Rng, typeNames: readonly string[], perType: number): { bytes: Uint8Array; type: string }[] {
  const out: { bytes: Uint8Array; type: string }[] = [];
  for (const type of typeNames) {
    const T = (pb as unknown as Record<string, { encode(m: object): { finish(): Uint8Array } }>)[type]!;
    for (let i = 0; i < perType; i++) out.push({ bytes: T.encode(randomMessage(rng, schema, type)).finish(), type });
  }
  return out;
}

// Every request and response type of the master's methods, by name in the generated module.
const pbByName = pb as unknown as Record<string, { decode(b: Uint8Array): object; encode(m: object): { finish(): Uint8Array } }>;
const METHOD_TYPE_NAMES = [
  ...new Set(
    Object.values(METHODS).flatMap((m) => [m.request, m.response].map((t) => Object.keys(pbByName).find((k) => pbByName[k] === (t as unknown))!)),
  ),
];

describe("fuzz: master RPC", () => {
  test("every method's request and response type was found in the schema", () => {
    expect(METHOD_TYPE_NAMES.length).toBeGreaterThan(60);
    for (const name of METHOD_TYPE_NAMES) expect(schema.messages.has(name)).toBe(true);
  });

  fuzzTest(frameReaderTarget());
  fuzzTest(hotDecodingTarget());
  fuzzTest(protobufjsTarget());
});

function frameReaderTarget(): FuzzTarget {
  const body = (n: number, k: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + k) & 0xff);
  const frames: Frame[][] = [
    [{ method: 1, requestId: 1, body: new Uint8Array(0) }],
    [{ method: 0x0102, requestId: 0x0a0b0c0d, body: new Uint8Array([9, 9]) }],
    [
      { method: 12, requestId: 2, body: body(40, 2) },
      { method: 9, requestId: 3, body: body(300, 3) },
      { method: 2, requestId: 4, body: body(1, 4) },
    ],
    [{ method: ERROR_METHOD, requestId: 7, body: encodeErrorBody(-1012) }],
    [
      { method: METHODS.batchGetReplicaList.id, requestId: 9, body: encodeKeyListRequest({ keys: ["a", "b", "ключ"], tenantId: "t" }) },
      { method: METHODS.batchGetReplicaList.id | 0x8000, requestId: 9, body: pb.BatchGetReplicaListResponse.encode({ results: [{ errorCode: -704 }] }).finish() },
    ],
  ];
  const seeds = frames.map((f) => encodeFrames(f));
  const allowed = (e: unknown) => e instanceof FrameError;
  const read = (input: Uint8Array, rng: Rng, chunks: Uint8Array[], maxBodyBytes: number | undefined) => {
    const reader = new FrameReader(maxBodyBytes === undefined ? {} : { maxBodyBytes });
    const r = pushAll((c) => reader.push(c), chunks, rng, allowed);
    let consumed = 0;
    for (const f of r.frames) {
      invariant(f.body.length <= input.length && (maxBodyBytes === undefined || f.body.length <= maxBodyBytes), `body of ${f.body.length} bytes from ${input.length}`);
      consumed += 12 + f.body.length;
      decodeErrorBody(f.body); // never throws
    }
    if (r.error === null) invariant(consumed + reader.pendingBytes === input.length, `frames ${consumed} + pending ${reader.pendingBytes} ≠ input ${input.length}`);
    return { ...r, pending: reader.pendingBytes };
  };
  const view = (fs: Frame[]) => fs.map((f) => `${f.method}/${f.requestId}/${toHex(f.body)}`).join(",");
  return {
    name: "rpc FrameReader",
    seeds,
    allowed,
    checkSeed(seed, i) {
      const got = new FrameReader().push(seed);
      invariant(view(got) === view(frames[i]!), "seed frames do not round-trip");
    },
    run(input, rng) {
      const limit = rng.chance(0.5) ? undefined : rng.pick([0, 4, 300, 4096]);
      const whole = read(input, rng, [input], limit);
      const chunked = read(input, rng, randomChunks(rng, input), limit);
      invariant((whole.error === null) === (chunked.error === null), `one chunk: ${whole.error}, random chunks: ${chunked.error}`);
      if (whole.error === null) {
        invariant(view(whole.frames) === view(chunked.frames) && whole.pending === chunked.pending, "chunking changed the frames");
      } else throw whole.error;
    },
  };
}

const PROTOBUFJS_MESSAGES =
  /^(index out of range|invalid varint encoding|invalid tag encoding|invalid length encoding|invalid wire type \d+ at offset \d+|max depth exceeded|illegal tag: field number 0|invalid end group tag|missing end group|illegal buffer)/;

/** An error protobufjs' reader or generated decoders throw for malformed bytes (and nothing else). */
function isProtobufjsError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === "ProtocolError") return true; // util.ProtocolError: missing required fields (proto2 only)
  // Reader#stringVerify: TextDecoder("utf-8", { fatal: true }) (Bun/Node and Deno word it differently).
  if (e.constructor === TypeError) return /^The encoded data (was|is) not valid/.test(e.message);
  return (e.constructor === Error || e.constructor === RangeError) && PROTOBUFJS_MESSAGES.test(e.message);
}

function hotDecodingTarget(): FuzzTarget {
  const rngTypes = [
    "BatchGetReplicaListRequest",
    "BatchExistKeyRequest",
    "GetReplicaListResponse",
    "PutStartResponse",
    "BatchGetReplicaListResponse",
    "BatchPutStartResponse",
    "BatchExistKeyResponse",
    "BatchPutEndResponse",
    "BatchPutRevokeResponse",
    "BatchRemoveResponse",
    "PutCommitResponse",
    "BatchPutStartRequest",
    "BatchPutEndRequest",
  ];
  const seeds = [
    ...protoSeeds(new Rng(FUZZ_SEED ^ 0x1234), rngTypes, 3).map((s) => s.bytes),
    encodeKeyListRequest({ keys: ["a", "model@1@0@abc@bfloat16", "ключ", "😀 emoji", "x".repeat(300)], tenantId: "default" }),
    encodeKeyListRequest({}),
  ];
  const codes = new Int32Array(64);
  const config = (b: Uint8Array) => pb.ReplicateConfig.decode(b);
  const decoders: [string, (b: Uint8Array) => unknown, (e: unknown) => boolean][] = [
    ["decodeKeyListRequest", decodeKeyListRequest, (e) => e instanceof ProtoError],
    ["decodeReplicaList", decodeReplicaList, (e) => e instanceof ProtoError],
    ["decodeBatchReplicaList", decodeBatchReplicaList, (e) => e instanceof ProtoError],
    ["decodeBatchExist", decodeBatchExist, (e) => e instanceof ProtoError],
    ["decodeBatchErrorCodes", decodeBatchErrorCodes, (e) => e instanceof ProtoError],
    ["decodeBatchResultCodes", (b) => decodeBatchResultCodes(b, codes), (e) => e instanceof ProtoError],
    ["decodeBatchPutStartRequest", (b) => decodeBatchPutStartRequest(b, config), (e) => e instanceof ProtoError || isProtobufjsError(e)],
    ["decodeBatchPutEndRequest", decodeBatchPutEndRequest, (e) => e instanceof ProtoError],
  ];
  /** Lengths that cannot exceed the input: every element takes at least one byte. */
  const bounded = (input: Uint8Array, name: string, v: unknown) => {
    const o = v as Record<string, unknown>;
    for (const key of ["keys", "replicas", "results", "lens", "metas"]) {
      const a = o[key];
      if (Array.isArray(a)) invariant(a.length <= input.length, `${name}: ${a.length} ${key} from ${input.length} bytes`);
    }
    if (typeof o["count"] === "number") invariant(o["count"] <= codes.length, `${name}: count ${o["count"]}`);
  };
  const tryPb = (type: string, b: Uint8Array): Record<string, unknown> | null => {
    try {
      return pbByName[type]!.decode(b) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  return {
    name: "rpc hot-decoding (ProtoError)",
    seeds,
    allowed: (e) => e instanceof ProtoError, // run() checks each decoder's errors, then throws one ProtoError
    run(input) {
      let failures = 0;
      for (const [name, decode, allowed] of decoders) {
        try {
          bounded(input, name, decode(input));
        } catch (e) {
          if (e instanceof InvariantError || !allowed(e)) throw e;
          failures++;
        }
      }
      // Where protobufjs also reads the bytes, both read the same (numbers past 2^53 aside: the
      // two round them differently; protobufjs rejects strings that are not UTF-8).
      const same = (a: number, b: unknown) => a > 2 ** 53 || a === Number(b ?? 0);
      let keys: string[] | null = null;
      try {
        keys = decodeKeyListRequest(input).keys;
      } catch {}
      const theirs = keys === null ? null : tryPb("BatchGetReplicaListRequest", input);
      if (keys !== null && theirs !== null) invariant(Bun.deepEquals(theirs["keys"], keys), "keys differ from protobufjs'");
      let list: ReturnType<typeof decodeReplicaList> | null = null;
      try {
        list = decodeReplicaList(input);
      } catch {}
      const theirList = list === null ? null : tryPb("GetReplicaListResponse", input);
      if (list !== null && theirList !== null) {
        const replicas = theirList["replicas"] as Record<string, unknown>[];
        invariant(replicas.length === list.replicas.length, "replica counts differ from protobufjs'");
        invariant(same(list.errorCode, theirList["errorCode"]) && same(list.leaseTtlMs, theirList["leaseTtlMs"]), "error code / lease differ from protobufjs'");
        list.replicas.forEach((r, j) => {
          const t = replicas[j]!;
          const where = `replica ${j}`;
          invariant(same(r.id, t["id"]) && same(r.status, t["status"]), `${where}: id/status differ from protobufjs'`);
          invariant((r.memory !== null) === (t["memory"] != null) && (r.localDisk !== undefined) === (t["localDisk"] != null), `${where}: oneof member differs from protobufjs' (${String(t["descriptor"])})`);
          const b = r.memory?.bufferDescriptor;
          const tb = (t["memory"] as { bufferDescriptor?: Record<string, unknown> } | null)?.bufferDescriptor;
          invariant(!b === !tb, `${where}: buffer descriptor presence differs`);
          if (b && tb) invariant(b.protocol === tb["protocol"] && b.transportEndpoint === tb["transportEndpoint"] && same(b.size, tb["size"]), `${where}: buffer descriptor differs`);
        });
      }
      if (failures === decoders.length) throw new ProtoError("rejected by every decoder");
    },
  };
}

function protobufjsTarget(): FuzzTarget {
  const seeded = protoSeeds(new Rng(FUZZ_SEED ^ 0x5eed), METHOD_TYPE_NAMES, 2);
  return {
    name: "protobufjs generated decoders",
    seeds: seeded.map((s) => s.bytes),
    allowed: isProtobufjsError,
    checkSeed(seed, i) {
      // decode(encode(m)) = m for the decoded seed (the seed's own bytes may differ: a random
      // message can set several members of a oneof, of which decoding keeps the last).
      const T = pbByName[seeded[i]!.type]!;
      const once = T.decode(seed);
      invariant(Bun.deepEquals(T.decode(T.encode(once).finish()), once), `${seeded[i]!.type}: decode(encode(m)) ≠ m`);
    },
    run(input, rng, seedIndex) {
      // The seed's own type, and two others (protobuf bytes of one type are plausible for many).
      const types = [seeded[seedIndex]!.type, rng.pick(METHOD_TYPE_NAMES), rng.pick(METHOD_TYPE_NAMES)];
      let error: unknown = null;
      for (const type of types) {
        try {
          pbByName[type]!.decode(input);
        } catch (e) {
          if (!isProtobufjsError(e)) throw e;
          error = e;
        }
      }
      if (error !== null) throw error;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// coro_rpc frames and struct_pack bodies

/** Sections of the golden capture that show a response without its request (golden.test.ts). */
const RESPONSE_ONLY: Record<string, CoroRpcName> = {
  "PutStart error: key already exists": "PutStart",
  "GetReplicaList error: missing key": "GetReplicaList",
  "Remove with force=true → ok": "Remove",
};

interface GoldenBody {
  type: SpType;
  body: Uint8Array;
  frame: Uint8Array;
  side: "request" | "response";
}

function goldenBodies(): GoldenBody[] {
  const out: GoldenBody[] = [];
  for (const x of GOLDEN_EXCHANGES) {
    let name: CoroRpcName | undefined;
    if (x.request) name = CORO_RPC_BY_ID.get(new DataView(fromHex(x.request.header).buffer).getUint32(8, true));
    else name = RESPONSE_ONLY[x.title];
    if (name === undefined) throw new Error(`golden exchange without an RPC: ${x.title}`);
    const rpc = MOONCAKE_RPCS[name];
    if (x.request && !x.request.truncated) {
      const body = fromHex(x.request.body ?? "");
      const frame = fromHex(x.request.header + (x.request.body ?? ""));
      if (rpc.args !== null) out.push({ type: rpc.args, body, frame, side: "request" });
      else out.push({ type: sp.void, body, frame, side: "request" });
    }
    for (const r of [x.response, x.laterResponse]) {
      if (!r || r.truncated) continue;
      out.push({ type: rpc.result, body: fromHex(r.body ?? ""), frame: fromHex(r.header + (r.body ?? "")), side: "response" });
    }
  }
  return out;
}

describe("fuzz: coro_rpc", () => {
  const golden = goldenBodies();
  test("the golden capture gives seeds for both sides", () => {
    expect(golden.filter((g) => g.side === "request").length).toBeGreaterThan(10);
    expect(golden.filter((g) => g.side === "response").length).toBeGreaterThan(10);
  });
  fuzzTest(coroFrameTarget(golden));
  fuzzTest(structPackTarget(golden));
});

function coroFrameTarget(golden: GoldenBody[]): FuzzTarget {
  const requests = golden.filter((g) => g.side === "request").map((g) => g.frame);
  const responses = golden.filter((g) => g.side === "response").map((g) => g.frame);
  const seeds = [...requests, ...responses, concat(requests.slice(0, 4)), concat(responses.slice(0, 4))];
  const isResponse = (i: number) => i >= requests.length && (i < requests.length + responses.length || i === seeds.length - 1);
  const allowed = (e: unknown) => e instanceof CoroFrameError;
  const view = (fs: (CoroRequest | CoroResponse)[]) => fs.map((f) => `${f.seq}/${"functionId" in f ? f.functionId : f.errCode}/${toHex(f.body)}`).join(",");
  const read = (side: "request" | "response", input: Uint8Array, chunks: Uint8Array[], rng: Rng, limit: number | undefined) => {
    const reader = side === "request" ? new CoroFrameReader<CoroRequest>("request", limit) : new CoroFrameReader<CoroResponse>("response", limit);
    const r = pushAll<CoroRequest | CoroResponse>((c) => reader.push(c), chunks, rng, allowed);
    for (const f of r.frames) {
      invariant(f.body.length <= input.length, `body of ${f.body.length} bytes from ${input.length}`);
      if ("functionId" in f) {
        const name = CORO_RPC_BY_ID.get(f.functionId);
        const args = name === undefined ? null : MOONCAKE_RPCS[name].args;
        if (args !== null) {
          try {
            spDecode(args, f.body);
          } catch (e) {
            if (!(e instanceof StructPackError)) throw e;
          }
        }
      } else if (f.errCode !== 0) decodeCoroErrorBody(f.body); // never throws
    }
    return { ...r, pending: reader.pendingBytes };
  };
  return {
    name: "coro_rpc CoroFrameReader",
    seeds,
    allowed,
    checkSeed(seed, i) {
      const side = isResponse(i) ? "response" : "request";
      const reader = side === "request" ? new CoroFrameReader<CoroRequest>("request") : new CoroFrameReader<CoroResponse>("response");
      const got = reader.push(seed);
      invariant(got.length >= 1 && reader.pendingBytes === 0, "a golden frame did not come out whole");
    },
    run(input, rng, seedIndex) {
      const side = rng.chance(0.8) === isResponse(seedIndex) ? "response" : "request";
      const limit = rng.chance(0.5) ? undefined : rng.pick([0, 16, 1024]);
      const whole = read(side, input, [input], rng, limit);
      const chunked = read(side, input, randomChunks(rng, input), rng, limit);
      invariant((whole.error === null) === (chunked.error === null), `one chunk: ${whole.error}, random chunks: ${chunked.error}`);
      if (whole.error !== null) throw whole.error;
      invariant(view(whole.frames) === view(chunked.frames) && whole.pending === chunked.pending, "chunking changed the frames");
    },
  };
}

function structPackTarget(golden: GoldenBody[]): FuzzTarget {
  const pairs: { type: SpType; body: Uint8Array }[] = [];
  for (const g of golden) {
    if (g.type.kind === "void" && g.body.length === 0) continue;
    pairs.push({ type: g.type, body: g.body });
    // The minimal form (no type literal) Mooncake peers may also send.
    pairs.push({ type: g.type, body: spEncode(g.type, spDecode(g.type, g.body), { typeLiteral: false }) });
  }
  // Wider length prefixes (2-byte size_type) and nested containers.
  const T = sp.struct([
    ["a", sp.map(sp.string, sp.vector(sp.i32))],
    ["b", sp.optional(sp.variant(sp.bool, sp.string, sp.u64n))],
    ["c", sp.expected(sp.void, sp.i32)],
    ["d", sp.uuid],
  ]);
  const value = { a: [["k".repeat(300), [1, -1]], ["", []]], b: { index: 1, value: "s" }, c: { ok: false, code: -704 }, d: "18446744073709551615-1" };
  pairs.push({ type: T, body: spEncode(T, value) }, { type: T, body: spEncode(T, value, { typeLiteral: false }) });
  return {
    name: "struct_pack decode (StructPackError)",
    seeds: pairs.map((p) => p.body),
    allowed: (e) => e instanceof StructPackError,
    checkSeed(seed, i) {
      const v = spDecode(pairs[i]!.type, seed);
      invariant(Bun.deepEquals(spDecode(pairs[i]!.type, spEncode(pairs[i]!.type, v)), v), "decode(encode(v)) ≠ v");
    },
    mutate(rng, seed) {
      const out = mutate(rng, seed, { corpus: pairs.map((p) => p.body) });
      // Mostly keep the 4-byte type hash, or nearly every input stops at the first check.
      if (rng.chance(0.8) && out.length >= 4 && seed.length >= 4) out.set(seed.subarray(0, 4));
      return out;
    },
    run(input, _rng, seedIndex) {
      const type = pairs[seedIndex]!.type;
      const v = spDecode(type, input);
      // What decodes re-encodes, and reads back as the same value.
      for (const typeLiteral of [true, false]) {
        const again = spDecode(type, spEncode(type, v, { typeLiteral }));
        invariant(Bun.deepEquals(again, v), `decode(encode(v)) ≠ v with typeLiteral=${typeLiteral}`);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Transfer engine: TCP data port, handshake frames, segment descriptors

describe("fuzz: transfer engine", () => {
  fuzzTest(tcpWireTarget());
  fuzzTest(handshakeTarget());
  fuzzTest(segmentDescriptorTarget());
});

function tcpWireTarget(): FuzzTarget {
  const golden = fromHex("00100000000000000000603d1f7f0000810000000000000000000000");
  const seeds = [
    golden.subarray(0, 24),
    fromHex("00100000000000000000603d1f7f00008000000000000000"),
    encodeSessionHeader({ op: OP_WRITE, version: 1, sizeBytes: 2 ** 32, address: 2 ** 47 - 4096 }),
    encodeSessionHeader({ op: OP_READ, version: 1, sizeBytes: 0, address: 0 }),
    fromHex("000000005654434d"),
    encodeStatusFrame(1),
    concat([encodeSessionHeader({ op: OP_READ, version: 2, sizeBytes: 8, address: 4096 }), encodeStatusFrame(0)]),
  ];
  const NEEDS_HEADER = "a SessionHeader needs 24 bytes";
  const NEEDS_STATUS = "a status frame needs 8 bytes";
  return {
    name: "tcp-wire session header and status frame",
    seeds,
    allowed: (e) => e instanceof RangeError && (e.message === NEEDS_HEADER || e.message === NEEDS_STATUS),
    run(input, rng) {
      let error: unknown = null;
      for (const offset of [0, rng.int(input.length + 1)]) {
        try {
          const h = decodeSessionHeader(input, offset);
          invariant(input.length - offset >= SESSION_HEADER_BYTES, "decoded a header from fewer than 24 bytes");
          if (h.ok) {
            invariant(Number.isSafeInteger(h.sizeBytes) && h.sizeBytes >= 0 && Number.isSafeInteger(h.address) && h.address >= 0, "unsafe size/address");
            const again = encodeSessionHeader(h);
            invariant(sameBytes(again.subarray(0, 16), input.subarray(offset, offset + 16)), "size/address do not re-encode");
            invariant((h.op | (h.version === 2 ? PROTO_V2_FLAG : 0)) === input[offset + 16], "opcode does not re-encode");
          }
        } catch (e) {
          if (e instanceof RangeError && e.message === NEEDS_HEADER) invariant(input.length - offset < SESSION_HEADER_BYTES, "RangeError on a long enough input");
          error = e;
        }
        try {
          const code = decodeStatusFrame(input, offset);
          invariant(input.length - offset >= STATUS_FRAME_BYTES, "decoded a status frame from fewer than 8 bytes");
          if (code !== null) invariant(sameBytes(encodeStatusFrame(code), input.subarray(offset, offset + 8)), "status does not re-encode");
        } catch (e) {
          if (e instanceof RangeError && e.message === NEEDS_STATUS) invariant(input.length - offset < STATUS_FRAME_BYTES, "RangeError on a long enough input");
          error = e;
        }
      }
      if (error !== null) throw error;
    },
  };
}

  '"timestamp":"2026-08-22 13:12:18.123456"}';
const SHM_JSON = GOLDEN_RAM.replace(
  '"name":"127.0.0.1:12345","protocol"',
  '"mooncake_shm":{"buffers":[{"addr":139772150415360,"length":268435456,"path":"/proc/4242/fd/17"}],"host":"boot-id-1234/host-a","uid":1000},"name":"127.0.0.1:12345","protocol"',
);

function handshakeTarget(): FuzzTarget {
  const frames: [number, string][] = [
    [HandshakeType.PROBE, "{}\n"],
    [HandshakeType.METADATA, `${GOLDEN_RAM}\n`],
    [HandshakeType.CONNECTION, '{"local_nic_path":"node01@mlx5_0","qp_num":[1,2],"reply_msg":""}\n'],
    [HandshakeType.NOTIFY, '{"name":"k","notify_msg":"ok"}\n'],
    [LEGACY_FRAME_TYPE, '{"peer_nic_path":"a@b"}\n'],
  ];
  const encoded = frames.map(([t, j]) => encodeHandshakeFrame(t as never, j));
  const seeds = [...encoded, concat(encoded)];
  const allowed = (e: unknown) => e instanceof HandshakeFrameError;
  const view = (fs: HandshakeFrame[]) => fs.map((f) => `${f.type}:${f.json}`).join("\u0000");
  const read = (input: Uint8Array, chunks: Uint8Array[], rng: Rng, maxLength: number) => {
    const reader = new HandshakeFrameReader({ maxLength });
    const r = pushAll((c) => reader.push(c), chunks, rng, allowed);
    for (const f of r.frames) invariant(f.json.length <= input.length, "a frame's JSON is longer than the input");
    if (r.error === null) invariant(reader.pendingBytes <= input.length, "pending more than was pushed");
    return { ...r, pending: reader.pendingBytes };
  };
  return {
    name: "handshake frames (HandshakeFrameError)",
    seeds,
    allowed,
    checkSeed(seed, i) {
      if (i >= frames.length) return;
      const f = decodeHandshakeFrame(seed);
      invariant(f.type === frames[i]![0] && f.json === frames[i]![1], "seed frame does not round-trip");
    },
    run(input, rng) {
      const maxLength = rng.pick([DEFAULT_HANDSHAKE_MAX_LENGTH, 64, 1024]);
      let error: Error | null = null;
      try {
        const f = decodeHandshakeFrame(input, maxLength);
        // Valid UTF-8 JSON re-encodes to exactly the input.
        let json: string | null = null;
        try {
          json = strictUtf8.decode(input.subarray(f.type === LEGACY_FRAME_TYPE ? 8 : 9));
        } catch {}
        if (json !== null) invariant(sameBytes(encodeHandshakeFrame(f.type, f.json), input), "a decoded frame does not re-encode to its bytes");
      } catch (e) {
        if (!allowed(e)) throw e;
        error = e as Error;
      }
      const whole = read(input, [input], rng, maxLength);
      const chunked = read(input, randomChunks(rng, input), rng, maxLength);
      invariant((whole.error === null) === (chunked.error === null), `one chunk: ${whole.error}, random chunks: ${chunked.error}`);
      if (whole.error === null) invariant(view(whole.frames) === view(chunked.frames) && whole.pending === chunked.pending, "chunking changed the frames");
      if (error !== null) throw error;
      if (whole.error !== null) throw whole.error;
    },
  };
}

function segmentDescriptorTarget(): FuzzTarget {
  const texts = [GOLDEN_RAM, RDMA_JSON, SHM_JSON, GOLDEN_RPC, RDMA_JSON.replace('"rdma"', '"barex"'), `${GOLDEN_RAM}\n`];
  const corpus = texts.map((t) => te.encode(t));
  const allowed = (e: unknown) => e instanceof SegmentDescriptorError;
  return {
    name: "segment descriptor JSON (SegmentDescriptorError)",
    seeds: corpus,
    allowed,
    checkSeed(seed, i) {
      const text = td.decode(seed);
      if (i === 3) invariant(encodeRpcMeta(decodeRpcMeta(text)) === text, "rpc_meta does not round-trip");
      else if (i < 3) invariant(encodeSegmentDescriptor(decodeSegmentDescriptor(text)) === text, "descriptor does not round-trip");
    },
    mutate(rng, seed) {
      return te.encode(mutateJsonText(rng, td.decode(seed), corpus));
    },
    run(input) {
      const text = td.decode(input);
      const errors: unknown[] = [];
      try {
        const d = decodeSegmentDescriptor(text, "seg");
        // What decodes re-encodes (with its own timestamp) and reads back identically.
        // (The encoder stamps "now" where the descriptor had no timestamp.)
        const again = decodeSegmentDescriptor(encodeSegmentDescriptor(d));
        if (d.timestamp === undefined) delete again.timestamp;
        if (d.rdma_server_name === "") again.rdma_server_name = ""; // "" means unset: not written
        invariant(Bun.deepEquals(again, d, true), `decode(encode(d)) ≠ d: ${JSON.stringify(again)} vs ${JSON.stringify(d)}`);
        for (const b of d.buffers) invariant(Number.isSafeInteger(b.addr) && b.addr > 0 && Number.isSafeInteger(b.length) && b.length > 0, "bad buffer range");
        if (d.priority_matrix) {
          invariant(Object.getPrototypeOf(d.priority_matrix) === Object.prototype, "priority_matrix lost its prototype");
          for (const [, pair] of Object.entries(d.priority_matrix)) invariant(Array.isArray(pair) && pair.length === 2, "priority_matrix entry");
        }
      } catch (e) {
        if (!allowed(e)) throw e;
        errors.push(e);
      }
      try {
        const m = decodeRpcMeta(text);
        invariant(Bun.deepEquals(decodeRpcMeta(encodeRpcMeta(m)), m, true), "rpc_meta does not round-trip");
      } catch (e) {
        if (!allowed(e)) throw e;
        errors.push(e);
      }
      if (errors.length === 2) throw errors[0]; // counted as decoded when either reads it
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Gateways' protocols: RESP and lm://

describe("fuzz: gateway protocols", () => {
  fuzzTest(respTarget());
  fuzzTest(lmRequestTarget());
  fuzzTest(lmReplyAndStoredTarget());
});

function respTarget(): FuzzTarget {
  const streams = [
    "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    "set \"a b\" 'c'\r\n\r\n",
    'SET "esc\\"aped\\n" x\n',
    "*0\r\n*-1\r\n*1\r\n$0\r\n\r\n",
    "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
    "PING\n",
  ];
  const seeds = [
    ...streams.map((s) => te.encode(s)),
    respEncode(["MSET", "a", te.encode("x".repeat(300)), "b", ""]),
  ];
  const limits = { maxBulkBytes: 4096, maxArrayLength: 64, maxPendingBytes: 8192, maxInlineBytes: 1024 };
  const allowed = (e: unknown) => e instanceof RespProtocolError;
  const read = (chunks: Uint8Array[], rng: Rng) => {
    const allocate = (n: number) => {
      invariant(Number.isSafeInteger(n) && n >= 0 && n <= limits.maxBulkBytes, `allocate(${n}) past maxBulkBytes`);
      return new Uint8Array(n);
    };
    const p = new RespParser({ ...limits, allocate });
    const commands: Uint8Array[][] = [];
    for (const c of chunks) {
      try {
        commands.push(...p.feed(c));
      } catch (e) {
        if (!allowed(e)) throw e;
        let again: unknown = null;
        try {
          p.feed(rng.bytes(rng.int(8)));
        } catch (e2) {
          again = e2;
        }
        invariant(again === e, "a failed RespParser did not keep throwing the same error");
        return { commands, error: e as Error, mid: true };
      }
    }
    for (const cmd of commands) {
      invariant(cmd.length > 0 && cmd.length <= limits.maxArrayLength, `a command of ${cmd.length} arguments`);
      let bytes = 0;
      for (const a of cmd) bytes += a.length;
      invariant(bytes <= chunks.reduce((n, c) => n + c.length, 0), "arguments longer than the input");
    }
    return { commands, error: null, mid: p.midCommand };
  };
  const view = (cs: Uint8Array[][]) => cs.map((c) => c.map(toHex).join(" ")).join("\n");
  return {
    name: "RespParser (RespProtocolError)",
    seeds,
    allowed,
    run(input, rng) {
      const whole = read([input], rng);
      const chunked = read(randomChunks(rng, input), rng);
      invariant((whole.error === null) === (chunked.error === null), `one chunk: ${whole.error}, random chunks: ${chunked.error}`);
      if (whole.error !== null) throw whole.error;
      invariant(view(whole.commands) === view(chunked.commands) && whole.mid === chunked.mid, "chunking changed the commands");
    },
  };
}

function lmRequestTarget(): FuzzTarget {
  const KEY = "vllm@meta-llama/Llama-3.1-8B@1@0@9f86d081884c7d65";
  const req = (command: number, length: number, key: string, shape: [number, number, number, number] = [32, 2, 256, 1024]) =>
    encodeRequest({ command, length, fmt: 1, dtype: 3, location: 1, shape, key });
  const value = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const seeds = [
    req(2, 0, KEY),
    req(3, 0, "ключ@1"),
    req(4, 0, ""),
    req(5, 0, "x".repeat(150)),
    concat([req(1, value.length, KEY), value, req(5, 0, ""), req(2, 0, KEY)]),
    req(1, 0, "k"),
  ];
  const maxValueBytes = 4096;
  const allowed = (e: unknown) => e instanceof LmProtocolError;
  const read = (input: Uint8Array, chunks: Uint8Array[], rng: Rng) => {
    const r = new LmRequestReader({
      maxValueBytes,
      allocate: (n) => {
        invariant(Number.isSafeInteger(n) && n > 0 && n <= maxValueBytes, `allocate(${n}) past maxValueBytes`);
        return new Uint8Array(n);
      },
    });
    const frames: string[] = [];
    for (const c of chunks) {
      if (r.error) break;
      for (const f of r.feed(c)) {
        invariant(f.request.command >= 1 && f.request.command <= 5 && f.request.length >= 0, "a frame with a bad command or length");
        if (f.request.command === 1) invariant(f.value !== null && f.value.length === f.request.length && f.value.length <= maxValueBytes, "PUT value length");
        else invariant(f.value === null && f.request.length === 0, "non-PUT with a payload");
        invariant(f.request.key === f.request.key.trim(), "key not stripped");
        frames.push(`${JSON.stringify(f.request)}:${f.value === null ? "-" : toHex(f.value)}`);
      }
    }
    if (r.error) {
      let again: unknown = null;
      try {
        r.feed(rng.bytes(rng.int(8)));
      } catch (e) {
        again = e;
      }
      invariant(again === r.error, "a failed LmRequestReader did not keep throwing its error");
    }
    const total = frames.length;
    invariant(total <= input.length / 186 + 1, "more frames than the input can hold");
    return { frames, error: r.error, mid: r.midFrame };
  };
  return {
    name: "LmRequestReader and decodeRequest (LmProtocolError)",
    seeds,
    allowed,
    run(input, rng) {
      let error: unknown = null;
      try {
        const r = decodeRequest(input);
        invariant(r.command >= 1 && r.command <= 5 && r.length >= 0, "decodeRequest: bad command or length");
      } catch (e) {
        if (!allowed(e)) throw e;
        error = e;
      }
      const whole = read(input, [input], rng);
      const chunked = read(input, randomChunks(rng, input), rng);
      invariant(whole.frames.join("\n") === chunked.frames.join("\n"), "chunking changed the frames");
      invariant(whole.error?.message === chunked.error?.message, `one chunk: ${whole.error}, random chunks: ${chunked.error}`);
      if (whole.error === null) invariant(whole.mid === chunked.mid, "chunking changed midFrame");
      if (whole.error !== null) throw whole.error;
      if (error !== null) throw error;
    },
  };
}

function lmReplyAndStoredTarget(): FuzzTarget {
  const meta = { fmt: 1, dtype: 3, shape: [32, 2, 256, -1] as [number, number, number, number] };
  const payload = Uint8Array.from({ length: 64 }, (_, i) => i);
  const seeds = [
    encodeReply({ code: 200, length: 4096, fmt: 1, dtype: 3, shape: [1, 2, 3, 4], location: 0 }),
    statusReply(400),
    concat([encodeStoredHeader(meta, payload.length), payload]),
    encodeStoredHeader(meta, 0),
  ];
  return {
    name: "lm decodeReply and decodeStored",
    seeds,
    allowed: (e) => e instanceof LmProtocolError,
    run(input) {
      const stored = decodeStored(input); // never throws: null when not ours
      if (stored !== null) {
        invariant(stored.value.length === input.length - 32, "stored value length");
        invariant(sameBytes(encodeStoredHeader(stored, stored.value.length), input.subarray(0, 32)), "stored header does not re-encode");
      }
      const r = decodeReply(input);
      invariant(sameBytes(encodeReply(r), input.subarray(0, 36)), "reply does not re-encode");
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Disk tier: record headers and the bucket scanner

describe("fuzz: disk records", () => {
  fuzzTest(bucketTarget());
});

function record(kind: RecordKind, key: string, value: Uint8Array): Uint8Array {
  const k = te.encode(key);
  const out = new Uint8Array(recordLength(k.length, value.length));
  encodeHeader(out, kind, k.length, value.length, recordCrcOf(k, value));
  out.set(k, RECORD_HEADER_BYTES);
  out.set(value, RECORD_HEADER_BYTES + k.length);
  return out;
}

/** Recomputes header (and, where the lengths fit, record) CRCs at magic positions, so mutated lengths and kinds get past the checksums. */
function reseal(rng: Rng, file: Uint8Array): void {
  const dv = new DataView(file.buffer, file.byteOffset, file.length);
  for (let p = 0; p + RECORD_HEADER_BYTES <= file.length; p += 8) {
    if (dv.getUint32(p, true) !== RECORD_MAGIC || !rng.chance(0.7)) continue;
    const keyLen = dv.getUint16(p + 8, true);
    const valueLen = dv.getUint32(p + 16, true) + dv.getUint32(p + 20, true) * 2 ** 32;
    const end = p + RECORD_HEADER_BYTES + keyLen + valueLen;
    if (end <= file.length && rng.chance(0.8)) {
      dv.setUint32(p + 24, crc32Update(file.subarray(p + RECORD_HEADER_BYTES, end), 0), true);
    }
    dv.setUint32(p + 28, crc32Update(file.subarray(p, p + 28), 0), true);
  }
}

function bucketTarget(): FuzzTarget {
  const big = Uint8Array.from({ length: MIN_SCAN_BUFFER_BYTES + 900 }, (_, i) => (i * 31) & 0xff);
  const records = [
    record(RecordKind.value, "k1", te.encode("hello")),
    record(RecordKind.tombstone, "k1", new Uint8Array(0)),
    record(RecordKind.value, "ключ", Uint8Array.from({ length: 200 }, (_, i) => i)),
    record(RecordKind.value, "x".repeat(MAX_KEY_BYTES), new Uint8Array(3)),
    record(RecordKind.value, "big", big),
  ];
  const seeds = [concat(records.slice(0, 3)), concat(records), records[0]!, concat([records[2]!, records[1]!, records[0]!])];
  const keyDecoder = new TextDecoder();
  return {
    name: "disk bucket records (decodeHeader, scanRecords)",
    seeds,
    allowed: () => false, // decodeHeader returns null; the scanner marks bytes damaged: nothing may escape
    maxBytes: 32 * 1024,
    mutate(rng, seed) {
      const out = mutate(rng, seed, { corpus: seeds, maxBytes: 32 * 1024 });
      if (rng.chance(0.6)) reseal(rng, out);
      return out;
    },
    async checkSeed(seed, i) {
      const found: ScannedRecord[] = [];
      const r = await scanRecords({ sizeBytes: seed.length, read: async (into, pos) => {
        const n = Math.min(into.length, seed.length - pos);
        into.set(seed.subarray(pos, pos + n));
        return n;
      } }, new Uint8Array(MIN_SCAN_BUFFER_BYTES), (rec) => found.push(rec));
      invariant(r.damaged.length === 0 && r.records === [3, 5, 1, 3][i] && found.length === r.records, `seed scan: ${JSON.stringify(r)}`);
    },
    async run(file, rng) {
      // Record headers at every 8th offset: null or a header that re-encodes to exactly its bytes.
      for (let p = 0; p <= file.length; p += 8) {
        const h = decodeHeader(file, p);
        if (h === null) continue;
        const again = new Uint8Array(RECORD_HEADER_BYTES);
        encodeHeader(again, h.kind, h.keyLen, h.valueLen, h.recordCrc);
        invariant(sameBytes(again, file.subarray(p, p + RECORD_HEADER_BYTES)), `header at ${p} does not re-encode`);
      }
      // The scanner, reading through random short reads into a minimum-size buffer.
      let reads = 0;
      const source = {
        sizeBytes: file.length,
        read: async (into: Uint8Array, position: number) => {
          if (++reads > 1_000_000) throw new InvariantError("scanner made over 10^6 reads: no progress");
          invariant(position >= 0 && position < file.length && into.length > 0, `read of ${into.length} bytes at ${position} of ${file.length}`);
          const n = rng.chance(0.3) ? rng.range(1, Math.min(into.length, file.length - position)) : Math.min(into.length, file.length - position);
          into.set(file.subarray(position, position + n));
          return n;
        },
      };
      const found: ScannedRecord[] = [];
      const result = await scanRecords(source, new Uint8Array(MIN_SCAN_BUFFER_BYTES + rng.int(64) * 8), (r) => found.push(r));
      invariant(result.records === found.length, "record count");
      // Records and damaged regions tile the file exactly, in order.
      const pieces = [...found.map((r) => ({ offset: r.offset, lengthBytes: r.lengthBytes, rec: r as ScannedRecord | null })), ...result.damaged.map((d) => ({ ...d, rec: null }))];
      pieces.sort((a, b) => a.offset - b.offset);
      let at = 0;
      for (const piece of pieces) {
        invariant(piece.offset === at && piece.lengthBytes > 0, `gap or overlap at ${at}: ${JSON.stringify(pieces.map(({ offset, lengthBytes }) => [offset, lengthBytes]))}`);
        at += piece.lengthBytes;
        const r = piece.rec;
        if (r === null) continue;
        invariant(r.offset % 8 === 0 && r.lengthBytes === recordLength(r.keyLen, r.valueLen), "record alignment/length");
        invariant(r.keyLen >= 1 && r.keyLen <= MAX_KEY_BYTES && (r.kind === RecordKind.value || r.valueLen === 0), "record header bounds");
        const keyBytes = file.subarray(r.offset + RECORD_HEADER_BYTES, r.offset + RECORD_HEADER_BYTES + r.keyLen);
        const value = file.subarray(r.offset + RECORD_HEADER_BYTES + r.keyLen, r.offset + RECORD_HEADER_BYTES + r.keyLen + r.valueLen);
        invariant(recordCrcOf(keyBytes, value) === r.recordCrc && keyDecoder.decode(keyBytes) === r.key, "an accepted record's bytes do not match it");
      }
      invariant(at === file.length, `pieces end at ${at} of ${file.length}`);
    },
  };
}
