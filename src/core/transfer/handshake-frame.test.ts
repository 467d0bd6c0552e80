// Handshake channel frames (`u64 LE length | u8 type | JSON`, transfer-engine-spec.md §2.4): exact
// byte layout, legacy untyped frames, streaming reassembly from arbitrary chunks, and the limits
// (MC_HANDSHAKE_MAX_LENGTH, zero length) enforced before a body is buffered. Runtime-neutral.

import { describe, expect, test } from "bun:test";
import {
  DEFAULT_HANDSHAKE_MAX_LENGTH,
  decodeHandshakeFrame,
  encodeHandshakeFrame,
  HandshakeFrameError,
  HandshakeFrameReader,
  HandshakeType,
  handshakeMaxLengthFromEnv,
  handshakeTypeName,
  LEGACY_FRAME_TYPE,
  MAX_HANDSHAKE_MAX_LENGTH,
} from "./handshake-frame.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
const header = (lo: number, hi = 0) => {
  const h = new Uint8Array(8);
  const v = new DataView(h.buffer);
  v.setUint32(0, lo, true);
  v.setUint32(4, hi, true);
  return h;
};
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

describe("encode / decode", () => {
  test("layout: u64 LE length (1 + JSON bytes), type byte, JSON", () => {
    const f = encodeHandshakeFrame(HandshakeType.PROBE, "{}\n");
    expect(hex(f)).toBe("04 00 00 00 00 00 00 00 03 7b 7d 0a");
    expect(decodeHandshakeFrame(f)).toEqual({ type: HandshakeType.PROBE, json: "{}\n" });
  });

  test("every type round-trips, UTF-8 JSON counted in bytes", () => {
    for (const type of [HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE]) {
      const json = '{"name":"é"}\n';
      const f = encodeHandshakeFrame(type, json);
      expect(new DataView(f.buffer).getUint32(0, true)).toBe(1 + 14);
      expect(f[8]).toBe(type);
      expect(decodeHandshakeFrame(f)).toEqual({ type, json });
    }
  });

  test("legacy frames have no type byte and read back as LEGACY (a Connection)", () => {
    const f = encodeHandshakeFrame(LEGACY_FRAME_TYPE, '{"qp_num":[1]}\n');
    expect(new DataView(f.buffer).getUint32(0, true)).toBe(15);
    expect(f[8]).toBe(0x7b); // '{' > 3
    expect(decodeHandshakeFrame(f)).toEqual({ type: LEGACY_FRAME_TYPE, json: '{"qp_num":[1]}\n' });
    expect(() => encodeHandshakeFrame(LEGACY_FRAME_TYPE, "\u0002x")).toThrow(HandshakeFrameError);
  });

  test("decode refuses truncated, overlong, empty and oversized frames", () => {
    const f = encodeHandshakeFrame(HandshakeType.METADATA, "{}");
    expect(() => decodeHandshakeFrame(f.subarray(0, 5))).toThrow("truncated");
    expect(() => decodeHandshakeFrame(f.subarray(0, f.length - 1))).toThrow("says 3 bytes, got 2");
    expect(() => decodeHandshakeFrame(concat(f, new Uint8Array([0])))).toThrow("says 3 bytes, got 4");
    expect(() => decodeHandshakeFrame(header(0))).toThrow("zero length");
    expect(() => decodeHandshakeFrame(header(DEFAULT_HANDSHAKE_MAX_LENGTH + 1))).toThrow("over the limit");
  });

  test("type names", () => {
    expect(handshakeTypeName(0)).toBe("CONNECTION");
    expect(handshakeTypeName(1)).toBe("METADATA");
    expect(handshakeTypeName(LEGACY_FRAME_TYPE)).toBe("LEGACY");
  });
});

describe("HandshakeFrameReader", () => {
  const frames = [
    encodeHandshakeFrame(HandshakeType.METADATA, '{"a":1}\n'),
    encodeHandshakeFrame(HandshakeType.NOTIFY, '{"name":"x","notify_msg":"y"}\n'),
    encodeHandshakeFrame(LEGACY_FRAME_TYPE, '{"payload":""}\n'),
  ];
  const stream = concat(...frames);
  const expected = frames.map((f) => decodeHandshakeFrame(f));

  test("frames from one chunk", () => {
    expect(new HandshakeFrameReader().push(stream)).toEqual(expected);
  });

  test("frames from byte-sized chunks, and from every split point", () => {
    const r = new HandshakeFrameReader();
    const got = [];
    for (let i = 0; i < stream.length; i++) got.push(...r.push(stream.subarray(i, i + 1)));
    expect(got).toEqual(expected);
    expect(r.pendingBytes).toBe(0);
    for (let cut = 1; cut < stream.length; cut++) {
      const s = new HandshakeFrameReader();
      expect([...s.push(stream.subarray(0, cut)), ...s.push(stream.subarray(cut))]).toEqual(expected);
    }
  });

  test("chunks may be reused by the caller after push", () => {
    const r = new HandshakeFrameReader();
    const buf = stream.slice(0, 12);
    r.push(buf);
    buf.fill(0xff);
    expect(r.push(stream.subarray(12))).toEqual(expected);
  });

  test("an oversized length throws as soon as the header is in", () => {
    const r = new HandshakeFrameReader();
    expect(r.push(header(DEFAULT_HANDSHAKE_MAX_LENGTH).subarray(0, 7))).toEqual([]);
    // Exactly the limit is fine (Mooncake: `length > kMaxLength` is the error).
    expect(r.push(header(DEFAULT_HANDSHAKE_MAX_LENGTH).subarray(7))).toEqual([]);
    const s = new HandshakeFrameReader();
    expect(() => s.push(header(DEFAULT_HANDSHAKE_MAX_LENGTH + 1))).toThrow("over the limit of 1048576");
    expect(() => new HandshakeFrameReader().push(header(1, 1))).toThrow("4294967297 bytes");
  });

  test("a smaller configured limit applies", () => {
    const r = new HandshakeFrameReader({ maxLength: 16 });
    expect(r.push(encodeHandshakeFrame(HandshakeType.PROBE, "x".repeat(15)))).toHaveLength(1);
    expect(() => r.push(encodeHandshakeFrame(HandshakeType.PROBE, "x".repeat(16)))).toThrow(HandshakeFrameError);
  });

  test("zero length throws", () => {
    expect(() => new HandshakeFrameReader().push(header(0))).toThrow("zero length");
  });

  test("HTTP or other garbage reads as an absurd length and is refused", () => {
    expect(() => new HandshakeFrameReader().push(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"))).toThrow("over the limit");
  });

  test("after an error every push throws it again (found by tests/fuzz)", () => {
    // The fuzzer's input: 8 bytes of JSON read as a length. The reader used to consume that header
    // and read the next bytes as a fresh frame, so a valid frame after the garbage came out.
    const r = new HandshakeFrameReader({ maxLength: 64 });
    const garbage = new TextEncoder().encode('s":[{"ad');
    let first: unknown;
    try {
      r.push(garbage);
    } catch (e) {
      first = e;
    }
    expect(first).toBeInstanceOf(HandshakeFrameError);
    expect(() => r.push(encodeHandshakeFrame(HandshakeType.PROBE, "{}\n"))).toThrow(first as Error);
    expect(() => r.push(new Uint8Array(0))).toThrow(HandshakeFrameError);
  });
});

describe("MC_HANDSHAKE_MAX_LENGTH", () => {
  test("parsed as Mooncake does: [1 MiB, 128 MiB], else the default", () => {
    expect(handshakeMaxLengthFromEnv(undefined)).toBe(DEFAULT_HANDSHAKE_MAX_LENGTH);
    expect(handshakeMaxLengthFromEnv(String(4 << 20))).toBe(4 << 20);
    expect(handshakeMaxLengthFromEnv(String(MAX_HANDSHAKE_MAX_LENGTH))).toBe(MAX_HANDSHAKE_MAX_LENGTH);
    expect(handshakeMaxLengthFromEnv(String(MAX_HANDSHAKE_MAX_LENGTH + 1))).toBe(DEFAULT_HANDSHAKE_MAX_LENGTH);
    expect(handshakeMaxLengthFromEnv("1024")).toBe(DEFAULT_HANDSHAKE_MAX_LENGTH);
    expect(handshakeMaxLengthFromEnv("2MB")).toBe(DEFAULT_HANDSHAKE_MAX_LENGTH);
    expect(handshakeMaxLengthFromEnv("")).toBe(DEFAULT_HANDSHAKE_MAX_LENGTH);
  });
});
