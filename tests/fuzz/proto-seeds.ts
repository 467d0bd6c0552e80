// Random, valid master RPC messages for the fuzz seeds: a tiny reader of proto/mooncake.proto's
// subset (top-level messages and enums, scalar/enum/message fields, repeated, optional, oneof)
// that fills every field of a message type, then encodes it with the generated protobufjs code.
// (protobufjs' full build could reflect the schema, but loading it next to the static module in
// one test process risks reconfiguring the shared `util.Long` the generated code switched off.)

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Rng } from "./mutate.ts";

interface Field {
  name: string;
  type: string;
  repeated: boolean;
}

export interface ProtoSchema {
  messages: Map<string, Field[]>;
  enums: Map<string, number[]>;
}

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

export function readSchema(path = join(import.meta.dir, "..", "..", "proto", "mooncake.proto")): ProtoSchema {
  const text = readFileSync(path, "utf8").replace(/\/\/.*$/gm, "");
  const messages = new Map<string, Field[]>();
  const enums = new Map<string, number[]>();
  // `message X {}` on one line, or a block up to the next "}" at the start of a line.
  for (const m of text.matchAll(/^(message|enum)\s+(\w+)\s*\{(?:[ \t]*\}|([\s\S]*?)^\})/gm)) {
    const [, kind, name] = m as unknown as [string, string, string];
    const body = m[3] ?? "";
    if (kind === "enum") {
      enums.set(
        name,
        [...body.matchAll(/^\s*\w+\s*=\s*(-?\d+)\s*;/gm)].map((v) => Number(v[1])),
      );
      continue;
    }
    const fields: Field[] = [];
    for (const f of body.matchAll(/^\s*(repeated\s+|optional\s+)?([A-Za-z_][\w.]*)\s+([a-z_]\w*)\s*=\s*(\d+)\s*;/gm)) {
      if (f[2] === "reserved") continue;
      fields.push({ name: camel(f[3]!), type: f[2]!, repeated: (f[1] ?? "").startsWith("repeated") });
    }
    messages.set(name, fields);
  }
  return { messages, enums };
}

const INT32S = [0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31), -704, 16383, 16384];
const UINT32S = [0, 1, 127, 128, 2 ** 32 - 1, 2 ** 31, 16384];
const UINT64S = [0, 1, 2 ** 32, 2 ** 53 - 1, 2 ** 40 + 5, 0x7f1f3d600000, 4096, 32 * 2 ** 20];
const STRINGS = ["", "k", "tcp", "127.0.0.1:12345", "model@1@0@abc@bfloat16", "ключ", "😀", "x".repeat(200), "default"];

function scalar(rng: Rng, type: string, schema: ProtoSchema, depth: number): unknown {
  switch (type) {
    case "int32":
    case "sint32":
    case "sfixed32":
      return rng.chance(0.7) ? rng.pick(INT32S) : rng.int(2 ** 32) - 2 ** 31;
    case "uint32":
    case "fixed32":
      return rng.chance(0.7) ? rng.pick(UINT32S) : rng.int(2 ** 32);
    case "int64":
    case "sint64":
    case "sfixed64":
      return rng.pick(UINT64S) * (rng.chance(0.2) ? -1 : 1);
    case "uint64":
    case "fixed64":
      return rng.pick(UINT64S);
    case "bool":
      return rng.chance(0.5);
    case "string":
      return rng.pick(STRINGS);
    case "bytes":
      return rng.bytes(rng.int(16));
    case "double":
    case "float":
      return rng.pick([0, 1.5, -2, 1e10]);
    default: {
      const values = schema.enums.get(type);
      if (values) return rng.pick(values);
      if (schema.messages.has(type)) return depth > 4 ? null : randomMessage(rng, schema, type, depth + 1);
      throw new Error(`proto-seeds: unknown type ${type}`);
    }
  }
}

/** A plain object with every field of `type` set (repeated fields get 0–3 items). */
export function randomMessage(rng: Rng, schema: ProtoSchema, type: string, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of schema.messages.get(type) ?? []) {
    if (rng.chance(0.15)) continue; // left unset
    if (f.repeated) {
      const n = rng.int(4);
      const items: unknown[] = [];
      for (let i = 0; i < n; i++) {
        const v = scalar(rng, f.type, schema, depth);
        if (v !== null) items.push(v);
      }
      out[f.name] = items;
    } else {
      const v = scalar(rng, f.type, schema, depth);
      if (v !== null) out[f.name] = v;
    }
  }
  return out;
}
