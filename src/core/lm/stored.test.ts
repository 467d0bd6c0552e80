import { describe, expect, test } from "bun:test";
import { decodeReply } from "./protocol.ts";
import { STORED_HEADER_BYTES, decodeStored, encodeStoredHeader, storedReply } from "./stored.ts";

const meta = { fmt: 1, dtype: 3, shape: [32, 2, 256, -1] as [number, number, number, number] };

describe("lm stored object", () => {
  test("round trip: header then payload, payload a view", () => {
    const payload = new Uint8Array([1, 2, 3, 4, 5]);
    const header = encodeStoredHeader(meta, payload.length);
    expect(header.length).toBe(STORED_HEADER_BYTES);
    expect([...header.subarray(0, 4)]).toEqual([0x4d, 0x43, 0x4c, 0x4d]);
    const object = new Uint8Array([...header, ...payload]);
    const stored = decodeStored(object);
    expect(stored).not.toBeNull();
    expect({ fmt: stored!.fmt, dtype: stored!.dtype, shape: stored!.shape }).toEqual(meta);
    expect(stored!.value).toEqual(payload);
    expect(stored!.value.buffer).toBe(object.buffer);
  });

  test("not ours: short, wrong magic, length that disagrees", () => {
    expect(decodeStored(new Uint8Array(10))).toBeNull();
    const object = new Uint8Array([...encodeStoredHeader(meta, 4), 9, 9, 9, 9]);
    expect(decodeStored(object.subarray(0, object.length - 1))).toBeNull();
    const wrongMagic = object.slice();
    wrongMagic[0] = 0x58;
    expect(decodeStored(wrongMagic)).toBeNull();
  });

  test("GET reply echoes fmt, dtype, shape with location 0", () => {
    const value = new Uint8Array([7, 7]);
    const [header, body] = storedReply({ ...meta, value });
    expect(decodeReply(header!)).toEqual({ code: 200, length: 2, ...meta, location: 0 });
    expect(body).toBe(value);
  });
});
