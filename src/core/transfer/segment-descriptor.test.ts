// Segment descriptor and rpc_meta JSON against the golden bytes a C++ Mooncake TCP target published
// (interop-golden.md §1), C++-shaped RDMA descriptors, our mooncake_shm extension, the checks of
// Mooncake's decoder, and the metadata key rules. Runtime-neutral: also runs under Deno.

import { describe, expect, test } from "bun:test";
import {
  decodeRpcMeta,
  decodeSegmentDescriptor,
  encodeRpcMeta,
  encodeSegmentDescriptor,
  formatSegmentTimestamp,
  jsoncppStringify,
  rpcMetaKey,
  type SegmentDescriptor,
  SegmentDescriptorError,
  segmentKey,
} from "./segment-descriptor.ts";
import { GOLDEN_RAM, GOLDEN_RPC, RDMA_JSON } from "./golden-descriptors.ts";


  '"timestamp":"2026-08-22 13:12:18.123456"}';

/** Parse `json`, let `edit` change it, and expect the decoder to reject it naming `field`. */
// biome-ignore lint/suspicious/noExplicitAny: the edits reach into arbitrary JSON on purpose
function rejects(json: string, edit: (o: any) => void, field: string | RegExp) {
  const o = JSON.parse(json);
  edit(o);
  const run = () => decodeSegmentDescriptor(JSON.stringify(o), "seg");
  expect(run).toThrow(SegmentDescriptorError);
  expect(run).toThrow(field);
}

describe("golden TCP descriptor (interop-golden §1)", () => {
  test("decodes to the published fields", () => {
    const d = decodeSegmentDescriptor(GOLDEN_RAM);
    expect(d).toEqual({
      name: "127.0.0.1:12345",
      protocol: "tcp",
      tcp_data_port: 16524,
      tcp_proto_version: 2,
      timestamp: "2026-11-23 21:56:39.465225",
      buffers: [{ name: "127.0.0.1:12345", addr: 139772150415360, length: 268435456 }],
    });
  });

  test("re-encodes to the identical bytes", () => {
    expect(encodeSegmentDescriptor(decodeSegmentDescriptor(GOLDEN_RAM))).toBe(GOLDEN_RAM);
  });

  test("encodes from a hand-built descriptor in Mooncake's member order", () => {
    const d: SegmentDescriptor = {
      timestamp: "2026-11-23 21:56:39.465225",
      tcp_proto_version: 2,
      tcp_data_port: 16524,
      protocol: "tcp",
      name: "127.0.0.1:12345",
      buffers: [{ length: 268435456, addr: 139772150415360, name: "127.0.0.1:12345" }],
    };
    expect(encodeSegmentDescriptor(d)).toBe(GOLDEN_RAM);
  });

  test("rpc_meta decodes and re-encodes identically", () => {
    const m = decodeRpcMeta(GOLDEN_RPC);
    expect(m).toEqual({ ip_or_host_name: "127.0.0.1", rpc_port: 16708 });
    expect(encodeRpcMeta(m)).toBe(GOLDEN_RPC);
  });

  test("unknown members are ignored (and not re-emitted)", () => {
    const withExtra = GOLDEN_RAM.replace('"name":"127.0.0.1:12345","protocol"', '"extra":{"x":[1]},"name":"127.0.0.1:12345","protocol"');
    expect(encodeSegmentDescriptor(decodeSegmentDescriptor(withExtra))).toBe(GOLDEN_RAM);
  });

  test("a trailing newline (FastWriter output) is accepted", () => {
    expect(decodeSegmentDescriptor(`${GOLDEN_RAM}\n`).tcp_data_port).toBe(16524);
  });

  test("without tcp_proto_version the version is 1", () => {
    const d = decodeSegmentDescriptor(GOLDEN_RAM.replace('"tcp_proto_version":2,', ""));
    expect(d.tcp_proto_version).toBe(1);
  });

  test("without a timestamp the encoder stamps the current time", () => {
    const d = decodeSegmentDescriptor(GOLDEN_RAM.replace(',"timestamp":"2026-11-23 21:56:39.465225"', ""));
    expect(d.timestamp).toBeUndefined();
    const out = JSON.parse(encodeSegmentDescriptor(d));
    expect(out.timestamp).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
  });
});

describe("RDMA descriptors", () => {
  test("devices, rkey/lkey, priority_matrix and rdma_server_name are parsed and preserved", () => {
    const d = decodeSegmentDescriptor(RDMA_JSON);
    expect(d.devices).toEqual([
      { name: "mlx5_0", lid: 0, gid: "00:00:00:00:00:00:00:00:00:00:ff:ff:0a:00:00:01" },
      { name: "mlx5_1", lid: 7, gid: "fe:80:00:00:00:00:00:00:02:00:00:ff:fe:00:00:02" },
    ]);
    expect(d.buffers[0]).toEqual({ name: "cpu:0", addr: 140213372928000, length: 1073741824, rkey: [2101506, 2101507], lkey: [2101504, 2101505] });
    expect(d.buffers[1]!.rkey).toEqual([]); // not remote-accessible
    expect(d.priority_matrix).toEqual({ "cpu:0": [["mlx5_0"], ["mlx5_1"]], "cuda:0": [["mlx5_1"], ["mlx5_0"]] });
    expect(d.rdma_server_name).toBe("10.1.0.1:16049");
    expect(d.tcp_data_port).toBe(-1163005939); // rdma-only: uninitialised int in C++, accepted
    expect(encodeSegmentDescriptor(d)).toBe(RDMA_JSON);
  });

  test("an empty topology is written as null, as Topology::toJson() does", () => {
    const json =
      '{"buffers":[],"devices":[],"name":"n","priority_matrix":null,"protocol":"rdma","tcp_data_port":0,"tcp_proto_version":2,"timestamp":"2026-01-01 00:00:00.000000"}';
    const d = decodeSegmentDescriptor(json);
    expect(d.priority_matrix).toBeNull();
    expect(encodeSegmentDescriptor(d)).toBe(json);
  });

  test("rkey must match lkey, and the device count for rdma", () => {
    rejects(RDMA_JSON, (o) => o.buffers[0].lkey.pop(), /buffers\[0\]\.rkey.*lkey/);
    rejects(
      RDMA_JSON,
      (o) => {
        o.buffers[0].rkey.push(1);
        o.buffers[0].lkey.push(1);
      },
      /buffers\[0\]\.rkey has 3 keys but there are 2 devices/,
    );
  });

  test("barex keys are not indexed by device, so their count may differ", () => {
    const o = JSON.parse(RDMA_JSON);
    o.protocol = "barex";
    o.buffers[0].rkey.push(1);
    o.buffers[0].lkey.push(1);
    expect(decodeSegmentDescriptor(JSON.stringify(o)).buffers[0]!.rkey).toHaveLength(3);
  });

  test("devices need a name and a gid; keys are uint32", () => {
    rejects(RDMA_JSON, (o) => (o.devices[1].gid = ""), "devices[1].gid");
    rejects(RDMA_JSON, (o) => delete o.devices[0].name, "devices[0].name");
    rejects(RDMA_JSON, (o) => (o.devices[0].lid = 70000), "devices[0].lid");
    rejects(RDMA_JSON, (o) => (o.buffers[0].rkey[1] = -1), "buffers[0].rkey[1]");
  });

  test('a location named "__proto__" is an entry like any other (found by tests/fuzz)', () => {
    // It used to be assigned, which set the matrix's prototype to the entry: the location vanished
    // from the matrix (and from the re-encoded JSON) and lookups reached Array.prototype.
    const json = RDMA_JSON.replace('"cpu:0":[[', '"__proto__":[[');
    const d = decodeSegmentDescriptor(json);
    expect(Object.getPrototypeOf(d.priority_matrix)).toBe(Object.prototype);
    expect(Object.keys(d.priority_matrix!)).toEqual(["__proto__", "cuda:0"]);
    expect(Object.getOwnPropertyDescriptor(d.priority_matrix, "__proto__")?.value).toEqual([["mlx5_0"], ["mlx5_1"]]);
    expect(encodeSegmentDescriptor(d)).toBe(json);
  });

  test("a malformed priority_matrix is refused", () => {
    rejects(RDMA_JSON, (o) => (o.priority_matrix["cpu:0"] = [["mlx5_0"]]), 'priority_matrix["cpu:0"]');
    rejects(RDMA_JSON, (o) => (o.priority_matrix["cpu:0"][1] = [3]), 'priority_matrix["cpu:0"][1][0]');
  });
});

describe("mooncake_shm extension", () => {
  const shm = {
    host: "boot-id-1234/host-a",
    uid: 1000,
    buffers: [{ addr: 139772150415360, length: 268435456, path: "/proc/4242/fd/17" }],
  };

  test("round-trips, placed where jsoncpp's sorted order puts it", () => {
    const d = { ...decodeSegmentDescriptor(GOLDEN_RAM), mooncake_shm: shm };
    const json = encodeSegmentDescriptor(d);
    expect(json).toBe(
      GOLDEN_RAM.replace(
        '"name":"127.0.0.1:12345","protocol"',
        '"mooncake_shm":{"buffers":[{"addr":139772150415360,"length":268435456,"path":"/proc/4242/fd/17"}],"host":"boot-id-1234/host-a","uid":1000},"name":"127.0.0.1:12345","protocol"',
      ),
    );
    expect(decodeSegmentDescriptor(json)).toEqual(d);
  });

  test("is validated: host, uid, and only /proc/<pid>/fd/<fd> paths", () => {
    const base = encodeSegmentDescriptor({ ...decodeSegmentDescriptor(GOLDEN_RAM), mooncake_shm: shm });
    rejects(base, (o) => (o.mooncake_shm.buffers[0].path = "/etc/passwd"), "mooncake_shm.buffers[0].path");
    rejects(base, (o) => (o.mooncake_shm.buffers[0].length = 0), "mooncake_shm.buffers[0].length");
    rejects(base, (o) => (o.mooncake_shm.host = ""), "mooncake_shm.host");
    rejects(base, (o) => (o.mooncake_shm.uid = -1), "mooncake_shm.uid");
    rejects(base, (o) => (o.mooncake_shm = [1]), "mooncake_shm must be an object");
  });
});

describe("rejections (as Mooncake's decodeSegmentDesc, plus type checks)", () => {
  test("buffer with an empty name, addr 0 or length 0", () => {
    rejects(GOLDEN_RAM, (o) => (o.buffers[0].name = ""), "buffers[0].name must not be empty");
    rejects(GOLDEN_RAM, (o) => delete o.buffers[0].name, "buffers[0].name");
    rejects(GOLDEN_RAM, (o) => (o.buffers[0].addr = 0), "buffers[0].addr must be > 0");
    rejects(GOLDEN_RAM, (o) => (o.buffers[0].length = 0), "buffers[0].length must be > 0");
    rejects(GOLDEN_RAM, (o) => delete o.buffers[0].addr, "buffers[0].addr is missing");
  });

  test("addresses must be non-negative safe integers", () => {
    // 2^53 + 1 cannot be represented exactly: JSON.parse would round it silently.
    const big = GOLDEN_RAM.replace("139772150415360", "9007199254740993");
    expect(() => decodeSegmentDescriptor(big)).toThrow("buffers[0].addr must be a safe integer");
    rejects(GOLDEN_RAM, (o) => (o.buffers[0].addr = -4096), "buffers[0].addr");
    rejects(GOLDEN_RAM, (o) => (o.buffers[0].addr = "0x7f00"), "buffers[0].addr must be an integer");
    rejects(GOLDEN_RAM, (o) => (o.buffers[0].length = 1.5), "buffers[0].length must be an integer");
  });

  test("the segment name is in the message", () => {
    const o = JSON.parse(GOLDEN_RAM);
    o.buffers[0].addr = 0;
    expect(() => decodeSegmentDescriptor(JSON.stringify(o), "127.0.0.1:12345")).toThrow(
      'segment descriptor of "127.0.0.1:12345": buffers[0].addr must be > 0',
    );
  });

  test("protocol: missing, a list, or one this engine does not speak", () => {
    rejects(GOLDEN_RAM, (o) => delete o.protocol, "protocol is missing");
    rejects(GOLDEN_RAM, (o) => (o.protocol = ["tcp", "cxl"]), "multi-protocol");
    rejects(GOLDEN_RAM, (o) => (o.protocol = "nvmeof"), '"nvmeof" is not supported');
  });

  test("tcp_data_port must be a port for tcp segments", () => {
    rejects(GOLDEN_RAM, (o) => (o.tcp_data_port = 0), "tcp_data_port");
    rejects(GOLDEN_RAM, (o) => (o.tcp_data_port = 70000), "tcp_data_port");
    rejects(GOLDEN_RAM, (o) => delete o.tcp_data_port, "tcp_data_port is missing");
  });

  test("wrong container types", () => {
    rejects(GOLDEN_RAM, (o) => (o.buffers = {}), "buffers must be an array");
    rejects(GOLDEN_RAM, (o) => (o.buffers[0] = 5), "buffers[0] must be an object");
    rejects(GOLDEN_RAM, (o) => (o.name = 5), "name must be a string");
    rejects(GOLDEN_RAM, (o) => (o.timestamp = 5), "timestamp must be a string");
  });

  test("not JSON, not an object", () => {
    expect(() => decodeSegmentDescriptor("{")).toThrow("invalid JSON");
    expect(() => decodeSegmentDescriptor("null")).toThrow("expected a JSON object");
    expect(() => decodeSegmentDescriptor("[1]")).toThrow("expected a JSON object");
  });

  test("rpc_meta: host and port", () => {
    expect(() => decodeRpcMeta('{"ip_or_host_name":"","rpc_port":1}')).toThrow("ip_or_host_name must not be empty");
    expect(() => decodeRpcMeta('{"ip_or_host_name":"h","rpc_port":0}')).toThrow("rpc_port");
    expect(() => decodeRpcMeta('{"ip_or_host_name":"h","rpc_port":65536}')).toThrow("rpc_port");
    expect(() => decodeRpcMeta('{"ip_or_host_name":"h"}', "n1")).toThrow('rpc_meta of "n1": rpc_port must be an integer');
  });

  test("encoding refuses protocols it cannot describe", () => {
    expect(() => encodeSegmentDescriptor({ ...decodeSegmentDescriptor(GOLDEN_RAM), protocol: "nvlink" })).toThrow("nvlink");
  });
});

describe("jsoncpp-compatible writer", () => {
  test("sorts members, compact, escapes non-ASCII as lowercase \\u", () => {
    expect(jsoncppStringify({ b: 1, a: [true, null, "x"], c: { z: "", y: -2 } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"y":-2,"z":""}}');
    expect(jsoncppStringify("节点-é\u0001\n\u007f")).toBe('"\\u8282\\u70b9-\\u00e9\\u0001\\n\u007f"');
    expect(jsoncppStringify("😀")).toBe('"\\ud83d\\ude00"');
    expect(jsoncppStringify({ k: undefined, j: 1 })).toBe('{"j":1}');
  });

  test("orders keys by UTF-8 bytes (code points), as std::map<CZString>", () => {
    // U+FF21 sorts before U+1F600 by code point, after it by UTF-16 code unit.
    expect(jsoncppStringify({ "😀": 1, "Ａ": 2 })).toBe('{"\\uff21":2,"\\ud83d\\ude00":1}');
  });

  test("a non-ASCII segment name survives a round trip", () => {
    const d = { ...decodeSegmentDescriptor(GOLDEN_RAM), name: "节点:1" };
    const json = encodeSegmentDescriptor(d);
    expect(json).toContain('"name":"\\u8282\\u70b9:1"');
    expect(decodeSegmentDescriptor(json).name).toBe("节点:1");
  });

  test("refuses non-integers", () => {
    expect(() => jsoncppStringify(1.5)).toThrow();
    expect(() => jsoncppStringify(2 ** 60)).toThrow();
  });
});

describe("timestamp", () => {
  test("local time YYYY-MM-DD HH:MM:SS.ffffff with zero-padded microseconds", () => {
    const ms = Date.UTC(2026, 0, 2, 3, 4, 5, 6);
    const d = new Date(ms);
    const p = (n: number, w = 2) => String(n).padStart(w, "0");
    const expected = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.006007`;
    expect(formatSegmentTimestamp(ms * 1000 + 7)).toBe(expected);
  });

  test("now has microsecond digits", () => {
    expect(formatSegmentTimestamp()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
  });
});

describe("keys (transfer-engine-spec §2.1)", () => {
  test("ram and rpc_meta keys, with and without a cluster id", () => {
    expect(segmentKey("127.0.0.1:12345")).toBe("mooncake/ram/127.0.0.1:12345");
    expect(rpcMetaKey("127.0.0.1:12345")).toBe("mooncake/rpc_meta/127.0.0.1:12345");
    expect(segmentKey("n1", "c1")).toBe("mooncake/c1/ram/n1");
    expect(rpcMetaKey("n1", "c1")).toBe("mooncake/c1/rpc_meta/n1");
    // Mooncake appends "/" only when the id does not already end with one.
    expect(segmentKey("n1", "c1/")).toBe("mooncake/c1/ram/n1");
    expect(segmentKey("n1", "")).toBe("mooncake/ram/n1");
  });

  test("a name containing / is used as the key path", () => {
    expect(segmentKey("nvmeof/disk0")).toBe("mooncake/nvmeof/disk0");
    expect(segmentKey("nvmeof/disk0", "c1")).toBe("mooncake/c1/nvmeof/disk0");
  });
});
