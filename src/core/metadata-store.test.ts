// Unit tests for the metadata KV (metadata-store.ts): Mooncake's put/overwrite/rpc_meta rules,
// listing and segment removal, and the limits that Mooncake's own server lacks.

import { describe, expect, test } from "bun:test";
import {
  DEFAULT_METADATA_LIMITS,
  MetadataStore,
  isRpcMetaKey,
  segmentMetadataKeys,
  utf8Length,
} from "./metadata-store.ts";

const enc = new TextEncoder();

describe("MetadataStore basics", () => {
  test("put creates, get returns the bytes, delete removes", () => {
    const s = new MetadataStore();
    expect(s.get("k")).toBeUndefined();
    expect(s.put("k", "v1")).toEqual({ ok: true, outcome: "created" });
    expect(s.getText("k")).toBe("v1");
    expect(s.has("k")).toBe(true);
    expect(s.size).toBe(1);
    expect(s.delete("k")).toBe(true);
    expect(s.delete("k")).toBe(false);
    expect(s.size).toBe(0);
    expect(s.totalBytes).toBe(0);
  });

  test("plain keys overwrite, identical bodies included (golden: `metadata updated`)", () => {
    const s = new MetadataStore();
    s.put("mooncake/ram/a", "x");
    expect(s.put("mooncake/ram/a", "x")).toEqual({ ok: true, outcome: "updated" });
    expect(s.put("mooncake/ram/a", "y")).toEqual({ ok: true, outcome: "updated" });
    expect(s.getText("mooncake/ram/a")).toBe("y");
  });

  test("values are kept byte for byte, including invalid UTF-8, and copied on put", () => {
    const s = new MetadataStore();
    const raw = new Uint8Array([0xff, 0x00, 0xc3, 0x28, 0x7b]);
    s.put("b", raw);
    raw[0] = 0; // the caller reusing its buffer must not change the stored value
    expect([...s.get("b")!]).toEqual([0xff, 0x00, 0xc3, 0x28, 0x7b]);
  });

  test("empty value is allowed (C++ stores an empty string)", () => {
    const s = new MetadataStore();
    expect(s.put("e", "").ok).toBe(true);
    expect(s.getText("e")).toBe("");
  });

  test("empty key is rejected", () => {
    expect(new MetadataStore().put("", "v")).toMatchObject({ ok: false, reason: "empty_key" });
  });

  test("totalBytes tracks UTF-8 key bytes + value bytes through overwrite and delete", () => {
    const s = new MetadataStore();
    s.put("é", "abc"); // 2 + 3
    expect(s.totalBytes).toBe(5);
    s.put("é", "abcdef");
    expect(s.totalBytes).toBe(8);
    s.put("k", new Uint8Array(10));
    expect(s.totalBytes).toBe(19);
    s.delete("é");
    expect(s.totalBytes).toBe(11);
    s.clear();
    expect(s.totalBytes).toBe(0);
    expect(s.size).toBe(0);
  });
});

describe("rpc_meta rule (spec §5, §8.14; interop-golden §2)", () => {
  const key = "mooncake/rpc_meta/127.0.0.1:12345";
  const v1 = '{"ip_or_host_name":"127.0.0.1","rpc_port":16708}';
  const v2 = '{"ip_or_host_name":"127.0.0.1","rpc_port":16709}';

  test("first put creates, identical re-put is `unchanged`, different body is rejected", () => {
    const s = new MetadataStore();
    expect(s.put(key, v1)).toEqual({ ok: true, outcome: "created" });
    expect(s.put(key, v1)).toEqual({ ok: true, outcome: "unchanged" });
    expect(s.put(key, v2)).toEqual({
      ok: false,
      reason: "duplicate_rpc_meta",
      message: "Duplicate rpc_meta key not allowed",
    });
    expect(s.getText(key)).toBe(v1);
  });

  test("after delete the key can be put with a new body", () => {
    const s = new MetadataStore();
    s.put(key, v1);
    s.delete(key);
    expect(s.put(key, v2)).toEqual({ ok: true, outcome: "created" });
  });

  test("the rule applies to any key containing rpc_meta, as in C++ (substring, not prefix)", () => {
    expect(isRpcMetaKey("mooncake/cluster1/rpc_meta/n")).toBe(true);
    expect(isRpcMetaKey("rpc_meta_abc")).toBe(true);
    expect(isRpcMetaKey("mooncake/ram/n")).toBe(false);
    const s = new MetadataStore();
    s.put("x/rpc_meta_y", "a");
    expect(s.put("x/rpc_meta_y", "b")).toMatchObject({ ok: false, reason: "duplicate_rpc_meta" });
  });

  test("allowRpcMetaOverwrite turns rpc_meta keys into plain keys", () => {
    const s = new MetadataStore({ allowRpcMetaOverwrite: true });
    s.put(key, v1);
    expect(s.put(key, v1)).toEqual({ ok: true, outcome: "unchanged" });
    expect(s.put(key, v2)).toEqual({ ok: true, outcome: "updated" });
    expect(s.getText(key)).toBe(v2);
  });
});

describe("limits", () => {
  test("defaults", () => {
    expect(DEFAULT_METADATA_LIMITS).toEqual({
      maxKeyBytes: 4096,
      maxValueBytes: 1024 * 1024,
      maxKeys: 1_000_000,
      maxTotalBytes: 1024 * 1024 * 1024,
    });
    expect(new MetadataStore().limits).toEqual(DEFAULT_METADATA_LIMITS);
  });

  test("key length in UTF-8 bytes", () => {
    const s = new MetadataStore({ maxKeyBytes: 4 });
    expect(s.put("abcd", "").ok).toBe(true);
    expect(s.put("abcde", "")).toMatchObject({ ok: false, reason: "key_too_long" });
    expect(s.put("éé", "").ok).toBe(true); // 4 bytes
    expect(s.put("ééa", "")).toMatchObject({ ok: false, reason: "key_too_long" });
  });

  test("value size", () => {
    const s = new MetadataStore({ maxValueBytes: 8 });
    expect(s.put("a", new Uint8Array(8)).ok).toBe(true);
    const r = s.put("b", new Uint8Array(9));
    expect(r).toMatchObject({ ok: false, reason: "value_too_large" });
    expect(r.ok ? "" : r.message).toContain("max 8");
    expect(s.has("b")).toBe(false);
  });

  test("key count: new keys rejected when full, overwrites still allowed", () => {
    const s = new MetadataStore({ maxKeys: 2 });
    s.put("a", "1");
    s.put("b", "1");
    expect(s.put("c", "1")).toMatchObject({ ok: false, reason: "too_many_keys" });
    expect(s.put("a", "2")).toEqual({ ok: true, outcome: "updated" });
    s.delete("b");
    expect(s.put("c", "1").ok).toBe(true);
  });

  test("total bytes: growth rejected, shrinking overwrite allowed", () => {
    const s = new MetadataStore({ maxTotalBytes: 10 });
    expect(s.put("a", "123456789").ok).toBe(true); // 1 + 9
    expect(s.put("b", "")).toMatchObject({ ok: false, reason: "store_full" });
    expect(s.put("a", "1234567890")).toMatchObject({ ok: false, reason: "store_full" });
    expect(s.put("a", "1").ok).toBe(true);
    expect(s.totalBytes).toBe(2);
  });

  test("invalid limits throw", () => {
    expect(() => new MetadataStore({ maxKeys: -1 })).toThrow(RangeError);
    expect(() => new MetadataStore({ maxValueBytes: 1.5 })).toThrow(RangeError);
  });

  test("utf8Length matches TextEncoder", () => {
    for (const s of ["", "abc", "é", "€", "𝄞", "a\ud800b", "\udc00", "mooncake/ram/127.0.0.1:1"]) {
      expect(utf8Length(s)).toBe(enc.encode(s).byteLength);
    }
  });
});

describe("listing and removal", () => {
  test("keys(prefix) is sorted; entries carry values; removePrefix counts", () => {
    const s = new MetadataStore();
    for (const k of ["mooncake/ram/b", "mooncake/ram/a", "mooncake/rpc_meta/a", "other"]) s.put(k, k);
    expect(s.keys()).toEqual(["mooncake/ram/a", "mooncake/ram/b", "mooncake/rpc_meta/a", "other"]);
    expect(s.keys("mooncake/ram/")).toEqual(["mooncake/ram/a", "mooncake/ram/b"]);
    expect(s.entries("mooncake/rpc_meta/").map(([k, v]) => [k, new TextDecoder().decode(v)])).toEqual([
      ["mooncake/rpc_meta/a", "mooncake/rpc_meta/a"],
    ]);
    expect(s.removePrefix("mooncake/ram/")).toBe(2);
    expect(s.keys()).toEqual(["mooncake/rpc_meta/a", "other"]);
  });

  test("segmentMetadataKeys follows the TE's naming", () => {
    expect(segmentMetadataKeys("127.0.0.1:12345")).toEqual({
      segment: "mooncake/ram/127.0.0.1:12345",
      rpcMeta: "mooncake/rpc_meta/127.0.0.1:12345",
    });
    expect(segmentMetadataKeys("n1", "c1")).toEqual({ segment: "mooncake/c1/ram/n1", rpcMeta: "mooncake/c1/rpc_meta/n1" });
    expect(segmentMetadataKeys("nvmeof/f").segment).toBe("mooncake/nvmeof/f");
  });

  function populated(): MetadataStore {
    const s = new MetadataStore();
    for (const k of [
      "mooncake/ram/n1",
      "mooncake/rpc_meta/n1",
      "mooncake/c1/ram/n1",
      "mooncake/c1/rpc_meta/n1",
      "mooncake/c2/ram/n1",
      "mooncake/ram/n10", // a different segment whose name shares a prefix
      "mooncake/ram/n2",
      "mooncake/a/b/ram/n1", // not a TE key shape: cluster ids contain no '/'
      "elsewhere/ram/n1",
    ]) {
      s.put(k, "{}");
    }
    return s;
  }

  test("removeSegment with no cluster: default prefix and every cluster prefix", () => {
    const s = populated();
    expect(s.removeSegment("n1")).toEqual([
      "mooncake/c1/ram/n1",
      "mooncake/c1/rpc_meta/n1",
      "mooncake/c2/ram/n1",
      "mooncake/ram/n1",
      "mooncake/rpc_meta/n1",
    ]);
    expect(s.keys()).toEqual(["elsewhere/ram/n1", "mooncake/a/b/ram/n1", "mooncake/ram/n10", "mooncake/ram/n2"]);
  });

  test("removeSegment scoped to one cluster, or to the default prefix only", () => {
    const s = populated();
    expect(s.removeSegment("n1", { clusterId: "c1" })).toEqual(["mooncake/c1/ram/n1", "mooncake/c1/rpc_meta/n1"]);
    expect(s.removeSegment("n1", { clusterId: "" })).toEqual(["mooncake/ram/n1", "mooncake/rpc_meta/n1"]);
    expect(s.has("mooncake/c2/ram/n1")).toBe(true);
    expect(s.removeSegment("absent")).toEqual([]);
    expect(s.removeSegment("")).toEqual([]);
  });
});
