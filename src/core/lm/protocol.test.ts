import { describe, expect, test } from "bun:test";
import {
  KEY_BYTES,
  LmCode,
  LmCommand,
  LmProtocolError,
  LmRequestReader,
  REPLY_HEADER_BYTES,
  REQUEST_HEADER_BYTES,
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  statusReply,
} from "./protocol.ts";

const te = new TextEncoder();

/**
 * What LMCache's ClientMetaMessage.serialize() produces: struct.pack("iiiiiiiii150s", command,
 * length, fmt, dtype, location, s0, s1, s2, s3, key.encode().ljust(150)), built by hand here.
 */
function pyRequest(command: number, length: number, fmt: number, dtype: number, location: number, shape: number[], key: string) {
  const b = new Uint8Array(4 * 9 + 150);
  const v = new DataView(b.buffer);
  for (const [i, x] of [command, length, fmt, dtype, location, ...shape].entries()) v.setInt32(4 * i, x, true);
  const k = te.encode(key);
  b.set(k, 36);
  for (let i = 36 + k.length; i < b.length; i++) b[i] = 0x20;
  return b;
}

/** ServerMetaMessage.serialize(): struct.pack("iiiiiiiii", code, length, fmt, dtype, s0..s3, location). */
function pyReply(code: number, length: number, fmt: number, dtype: number, shape: number[], location: number) {
  const b = new Uint8Array(36);
  const v = new DataView(b.buffer);
  for (const [i, x] of [code, length, fmt, dtype, ...shape, location].entries()) v.setInt32(4 * i, x, true);
  return b;
}

const KEY = "vllm@meta-llama/Llama-3.1-8B@1@0@9f86d081884c7d65";

describe("lm:// protocol", () => {
  test("sizes", () => {
    expect(REQUEST_HEADER_BYTES).toBe(186);
    expect(REPLY_HEADER_BYTES).toBe(36);
    expect(KEY_BYTES).toBe(150);
    expect(LmCommand).toEqual({ PUT: 1, GET: 2, EXIST: 3, LIST: 4, HEALTH: 5 });
    expect(LmCode).toEqual({ SUCCESS: 200, FAIL: 400 });
  });

  test("request bytes match struct.pack('iiiiiiiii150s')", () => {
    const wire = pyRequest(1, 33554432, 1, 3, 1, [32, 2, 256, 1024], KEY);
    expect(encodeRequest({ command: 1, length: 33554432, fmt: 1, dtype: 3, location: 1, shape: [32, 2, 256, 1024], key: KEY })).toEqual(wire);
    expect(decodeRequest(wire)).toEqual({
      command: 1,
      length: 33554432,
      fmt: 1,
      dtype: 3,
      location: 1,
      shape: [32, 2, 256, 1024],
      key: KEY,
    });
    // Location defaults to 0 (None), the key padding is spaces.
    const get = encodeRequest({ command: 2, length: 0, fmt: 1, dtype: 2, shape: [0, 0, 0, 0], key: "k" });
    expect(get).toEqual(pyRequest(2, 0, 1, 2, 0, [0, 0, 0, 0], "k"));
    expect(get[37]).toBe(0x20);
    expect(get[185]).toBe(0x20);
  });

  test("key: 150 bytes exactly, UTF-8, stripped like Python's .strip()", () => {
    const full = "x".repeat(150);
    expect(decodeRequest(pyRequest(3, 0, 1, 2, 0, [0, 0, 0, 0], full)).key).toBe(full);
    expect(() => encodeRequest({ command: 3, length: 0, fmt: 1, dtype: 2, shape: [0, 0, 0, 0], key: "x".repeat(151) })).toThrow(LmProtocolError);
    expect(decodeRequest(pyRequest(3, 0, 1, 2, 0, [0, 0, 0, 0], "ключ@1")).key).toBe("ключ@1");
    const bad = pyRequest(3, 0, 1, 2, 0, [0, 0, 0, 0], "k");
    bad[36] = 0xff;
    expect(() => decodeRequest(bad)).toThrow("UTF-8");
  });

  test("reply bytes match struct.pack('iiiiiiiii') with location last", () => {
    const wire = pyReply(200, 4096, 1, 3, [1, 2, 3, 4], 0);
    const r = { code: 200, length: 4096, fmt: 1, dtype: 3, shape: [1, 2, 3, 4] as [number, number, number, number], location: 0 };
    expect(encodeReply(r)).toEqual(wire);
    expect(decodeReply(wire)).toEqual(r);
    expect(statusReply(400)).toEqual(pyReply(400, 0, 1, 2, [0, 0, 0, 0], 0));
    expect(new DataView(encodeReply({ ...r, location: 7 }).buffer).getInt32(32, true)).toBe(7);
  });

  test("reader: frames split anywhere", () => {
    const value = new Uint8Array(1000).map((_, i) => i & 0xff);
    const wire = new Uint8Array([
      ...pyRequest(1, value.length, 1, 3, 0, [2, 0, 0, 0], "a"),
      ...value,
      ...pyRequest(5, 0, 1, 2, 0, [0, 0, 0, 0], ""),
      ...pyRequest(2, 0, 1, 2, 0, [0, 0, 0, 0], "a"),
    ]);
    const whole = new LmRequestReader().feed(wire);
    expect(whole.map((f) => f.request.command)).toEqual([1, 5, 2]);
    expect(whole[0]!.value).toEqual(value);
    expect(whole[1]!.value).toBeNull();
    for (let a = 0; a <= wire.length; a += 7) {
      for (let b = a; b <= wire.length; b += 97) {
        const r = new LmRequestReader();
        const got = [...r.feed(wire.subarray(0, a)), ...r.feed(wire.subarray(a, b)), ...r.feed(wire.subarray(b))];
        expect(got).toEqual(whole);
        expect(r.midFrame).toBe(false);
      }
    }
  });

  test("reader: incomplete frames stay inside", () => {
    const r = new LmRequestReader();
    expect(r.feed(pyRequest(1, 10, 1, 2, 0, [0, 0, 0, 0], "k").subarray(0, 100))).toEqual([]);
    expect(r.midFrame).toBe(true);
    const r2 = new LmRequestReader();
    expect(r2.feed(new Uint8Array([...pyRequest(1, 10, 1, 2, 0, [0, 0, 0, 0], "k"), 1, 2, 3]))).toEqual([]);
    expect(r2.midFrame).toBe(true);
  });

  test("reader: bad frames are sticky errors", () => {
    const bad = (bytes: Uint8Array, limit?: number) => {
      const r = new LmRequestReader({ maxValueBytes: limit });
      expect(r.feed(bytes)).toEqual([]);
      expect(r.error).toBeInstanceOf(LmProtocolError);
      expect(() => r.feed(pyRequest(5, 0, 1, 2, 0, [0, 0, 0, 0], ""))).toThrow(r.error!.message);
      return r.error!.message;
    };
    expect(bad(pyRequest(1, 1025, 1, 2, 0, [0, 0, 0, 0], "k"), 1024)).toContain("exceeds the limit");
    expect(bad(pyRequest(9, 0, 1, 2, 0, [0, 0, 0, 0], "k"))).toContain("unknown command 9");
    expect(bad(pyRequest(1, -1, 1, 2, 0, [0, 0, 0, 0], "k"))).toContain("negative length");
    expect(bad(pyRequest(2, 5, 1, 2, 0, [0, 0, 0, 0], "k"))).toContain("only PUT carries a payload");
    bad(te.encode("GET / HTTP/1.1\r\n".repeat(12)));
    // Frames before the bad bytes still come out.
    const r = new LmRequestReader();
    const got = r.feed(new Uint8Array([...pyRequest(5, 0, 1, 2, 0, [0, 0, 0, 0], ""), ...pyRequest(7, 0, 1, 2, 0, [0, 0, 0, 0], "")]));
    expect(got.map((f) => f.request.command)).toEqual([5]);
    expect(r.error?.message).toContain("unknown command 7");
    // A zero-length PUT is a complete frame.
    expect(new LmRequestReader().feed(pyRequest(1, 0, 1, 2, 0, [0, 0, 0, 0], "k"))[0]!.value).toEqual(new Uint8Array(0));
  });
});
