import { describe, expect, test } from "bun:test";
import {
  decodeErrorBody,
  encodeErrorBody,
  encodeFrames,
  ERROR_METHOD,
  FRAME_HEADER_BYTES,
  FrameError,
  FrameReader,
} from "./frame.ts";

const frame = (method: number, requestId: number, bodyBytes: number) => ({
  method,
  requestId,
  body: Uint8Array.from({ length: bodyBytes }, (_, i) => (i * 7 + requestId) & 0xff),
});

describe("FrameReader", () => {
  test("header layout is little-endian magic, version, method, id, length", () => {
    const bytes = encodeFrames([{ method: 0x0102, requestId: 0x0a0b0c0d, body: new Uint8Array([9, 9]) }]);
    expect([...bytes]).toEqual([0x4d, 1, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a, 2, 0, 0, 0, 9, 9]);
  });

  test("reassembles frames from every possible split, one byte at a time included", () => {
    const frames = [frame(1, 1, 0), frame(12, 2, 40), frame(9, 3, 300), frame(2, 4, 1)];
    const bytes = encodeFrames(frames);
    for (const step of [1, 2, 5, 13, 64, bytes.length]) {
      const reader = new FrameReader();
      const out = [];
      for (let i = 0; i < bytes.length; i += step) out.push(...reader.push(bytes.slice(i, i + step)));
      expect(out.map((f) => ({ ...f, body: [...f.body] }))).toEqual(frames.map((f) => ({ ...f, body: [...f.body] })));
      expect(reader.pendingBytes).toBe(0);
    }
  });

  test("a truncated frame stays pending and yields nothing", () => {
    const bytes = encodeFrames([frame(3, 7, 100)]);
    const reader = new FrameReader();
    expect(reader.push(bytes.subarray(0, bytes.length - 1))).toEqual([]);
    expect(reader.pendingBytes).toBe(bytes.length - 1);
  });

  test("garbage, a wrong version and an oversized length are FrameErrors", () => {
    expect(() => new FrameReader().push(new TextEncoder().encode("GET / HTTP/1.1\r\n"))).toThrow(FrameError);
    const wrongVersion = encodeFrames([frame(1, 1, 0)]);
    wrongVersion[1] = 9;
    expect(() => new FrameReader().push(wrongVersion)).toThrow("unsupported frame version 9");
    const huge = encodeFrames([frame(1, 1, 0)]);
    new DataView(huge.buffer).setUint32(8, 0xffffffff, true);
    expect(() => new FrameReader({ maxBodyBytes: 1024 }).push(huge)).toThrow("over the limit of 1024");
  });

  test("a huge declared length is refused at the header, before any body arrives", () => {
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    header.set(encodeFrames([frame(1, 1, 0)]));
    new DataView(header.buffer).setUint32(8, 2 ** 31, true);
    expect(() => new FrameReader().push(header)).toThrow(FrameError);
  });
});

describe("error frames", () => {
  test("carry an i32 error code", () => {
    expect(decodeErrorBody(encodeErrorBody(-1012))).toBe(-1012);
    expect(decodeErrorBody(new Uint8Array(3))).toBe(-1);
    expect(ERROR_METHOD & 0x8000).toBe(0x8000);
  });
});
