import { describe, expect, test } from "bun:test";
import { formatBytes, formatDuration, parseDuration, parseSize } from "./units.ts";

describe("parseSize", () => {
  test("accepts integers and 1024-based suffixes", () => {
    expect(parseSize(3355443200)).toEqual({ ok: true, bytes: 3355443200 });
    expect(parseSize("80GB")).toEqual({ ok: true, bytes: 80 * 1024 ** 3 });
    expect(parseSize("512k")).toEqual({ ok: true, bytes: 512 * 1024 });
    expect(parseSize("3.125 GiB")).toEqual({ ok: true, bytes: 3355443200 });
    expect(parseSize("16mb")).toEqual({ ok: true, bytes: 16 * 1024 ** 2 });
    expect(parseSize("1T")).toEqual({ ok: true, bytes: 1024 ** 4 });
    expect(parseSize("4096")).toEqual({ ok: true, bytes: 4096 });
  });
  test("rejects words, negatives, fractions of bytes and other types", () => {
    for (const bad of ["lots", "-1", "10XB", "", "1e9", -5, 1.5, true, null, [1], { a: 1 }]) {
      const r = parseSize(bad);
      expect(r.ok).toBe(false);
    }
    const r = parseSize("lots");
    expect(r.ok === false && r.error).toContain('"lots"');
  });
});

describe("parseDuration", () => {
  test("accepts bare numbers in the flag's unit and ms/s/m/h suffixes", () => {
    expect(parseDuration(10000)).toEqual({ ok: true, ms: 10000 });
    expect(parseDuration("10s")).toEqual({ ok: true, ms: 10000 });
    expect(parseDuration("500ms")).toEqual({ ok: true, ms: 500 });
    expect(parseDuration("2m")).toEqual({ ok: true, ms: 120000 });
    expect(parseDuration("1h")).toEqual({ ok: true, ms: 3600000 });
    expect(parseDuration("10", "s")).toEqual({ ok: true, ms: 10000 });
  });
  test("rejects junk", () => {
    expect(parseDuration("soon").ok).toBe(false);
    expect(parseDuration("-1s").ok).toBe(false);
    expect(parseDuration({}).ok).toBe(false);
  });
});

describe("formatting", () => {
  test("formatBytes is base 1024", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(3355443200)).toBe("3.13 GiB");
  });
  test("formatDuration picks a unit", () => {
    expect(formatDuration(0.25)).toBe("250 µs");
    expect(formatDuration(2.5)).toBe("2.5 ms");
    expect(formatDuration(1500)).toBe("1.5 s");
  });
});
