import { describe, expect, test } from "bun:test";
import { seededRandom } from "../core/master/random.ts";
import { bufferUtf8Slicer } from "./utf8.ts";

describe("Buffer utf8Slice as the protobuf string decoder", () => {
  const slice = bufferUtf8Slicer();

  test("exists under Bun", () => {
    expect(slice).not.toBeNull();
  });

  test("decodes exactly as TextDecoder, invalid sequences included, at any offset", () => {
    const decoder = new TextDecoder();
    const random = seededRandom(42);
    // Valid multi-byte pieces, their fragments, surrogates encoded in UTF-8 (invalid), and noise.
    const pieces = [[0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xff], [0x41]];
    for (let i = 0; i < 20_000; i++) {
      const bytes: number[] = [];
      const parts = Math.floor(random() * 8);
      for (let p = 0; p < parts; p++) {
        if (random() < 0.3) bytes.push(Math.floor(random() * 256));
        else bytes.push(...pieces[Math.floor(random() * pieces.length)]!.slice(0, 1 + Math.floor(random() * 4)));
      }
      const padded = Uint8Array.from([0x7a, ...bytes, 0x7a]);
      expect(slice!(padded, 1, padded.length - 1)).toBe(decoder.decode(Uint8Array.from(bytes)));
    }
  });
});
