// The RDMA handshake message and slicing, pure functions (run under Bun and Deno).

import { describe, expect, test } from "bun:test";
import {
  decodeHandshakeDesc,
  encodeHandshakeDesc,
  formatGid,
  handshakeRejection,
  MAX_QPS_PER_ENDPOINT,
  nicPath,
  parseGid,
  splitNicPath,
} from "./rdma-connect.ts";
import { assignRails, DEFAULT_SLICE_BYTES, sliceRequest } from "./rdma-slices.ts";

describe("HandShakeDesc", () => {
  test("encodes as Mooncake's jsoncpp writer (sorted keys, compact) and decodes back", () => {
    const d = {
      localNicPath: "10.0.0.1:15000@mlx5_0",
      localLid: 0,
      localGid: "00:00:00:00:00:00:00:00:00:00:ff:ff:0a:00:00:01",
      peerNicPath: "10.0.0.2:15001@mlx5_1",
      qpNums: [1234, 1235],
      readyAck: false,
      replyMsg: "",
    };
    const json = encodeHandshakeDesc(d);
    expect(json).toBe(
      '{"local_gid":"00:00:00:00:00:00:00:00:00:00:ff:ff:0a:00:00:01","local_lid":0,"local_nic_path":"10.0.0.1:15000@mlx5_0",' +
        '"payload":"","peer_nic_path":"10.0.0.2:15001@mlx5_1","qp_num":[1234,1235],"ready_ack":false,"reply_msg":""}',
    );
    expect(decodeHandshakeDesc(json)).toEqual(d);
    // Without ready_ack the member is absent (the peer does not speak the ready-ACK protocol).
    const { readyAck: _, ...noAck } = d;
    expect(encodeHandshakeDesc(noAck)).not.toContain("ready_ack");
    expect(decodeHandshakeDesc(encodeHandshakeDesc(noAck)).readyAck).toBeUndefined();
  });

  test("a rejection carries only the reason", () => {
    const r = decodeHandshakeDesc(handshakeRejection("no such device"));
    expect(r).toEqual({ localNicPath: "", localLid: 0, localGid: "", peerNicPath: "", qpNums: [], replyMsg: "no such device" });
  });

  test("hostile input is refused with the field named", () => {
    const bad: [string, string][] = [
      ["not json", "invalid JSON"],
      ["[1]", "not a JSON object"],
      ['{"local_lid":70000}', "local_lid must be a uint16"],
      ['{"local_lid":-1}', "local_lid must be a uint16"],
      ['{"qp_num":"1"}', "qp_num must be an array"],
      [`{"qp_num":[${Array(MAX_QPS_PER_ENDPOINT + 1).fill(1).join(",")}]}`, "qp_num must be an array of at most"],
      ['{"qp_num":[16777216]}', "24-bit QP numbers"],
      ['{"qp_num":[1.5]}', "24-bit QP numbers"],
      ['{"local_nic_path":5}', "local_nic_path must be a string"],
      [`{"local_gid":"${"a".repeat(5000)}"}`, "local_gid is longer than 4096"],
      ['{"ready_ack":"yes"}', "ready_ack must be a boolean"],
    ];
    for (const [json, message] of bad) expect(() => decodeHandshakeDesc(json)).toThrow(message);
  });
});

describe("NIC paths and GIDs", () => {
  test("a NIC path splits at its last @", () => {
    expect(nicPath("10.0.0.1:15000", "mlx5_0")).toBe("10.0.0.1:15000@mlx5_0");
    expect(splitNicPath("a@b@mlx5_0")).toEqual({ server: "a@b", hca: "mlx5_0" });
    expect(splitNicPath("nohca@")).toBeNull();
    expect(splitNicPath("@mlx5_0")).toBeNull();
    expect(splitNicPath("plain")).toBeNull();
  });

  test("GIDs round-trip as %02x joined by ':' and malformed ones are refused", () => {
    const gid = Uint8Array.from({ length: 16 }, (_, i) => (i === 10 || i === 11 ? 0xff : i === 15 ? 1 : 0));
    const text = formatGid(gid);
    expect(text).toBe("00:00:00:00:00:00:00:00:00:00:ff:ff:00:00:00:01");
    expect(parseGid(text)).toEqual(gid);
    expect(() => parseGid("00:11")).toThrow("malformed GID");
    expect(() => parseGid(`${text.slice(0, -2)}zz`)).toThrow("malformed GID");
    expect(() => formatGid(new Uint8Array(4))).toThrow("16 bytes");
  });
});

describe("slicing", () => {
  test("64 KiB slices; a tail of at most a quarter slice is merged into the last", () => {
    const s = DEFAULT_SLICE_BYTES;
    expect(sliceRequest(1)).toEqual([{ offsetBytes: 0, lengthBytes: 1 }]);
    expect(sliceRequest(s + s / 4)).toEqual([{ offsetBytes: 0, lengthBytes: s + s / 4 }]);
    expect(sliceRequest(s + s / 4 + 1)).toEqual([
      { offsetBytes: 0, lengthBytes: s },
      { offsetBytes: s, lengthBytes: s / 4 + 1 },
    ]);
    const big = sliceRequest(128 * 1024 * 1024);
    expect(big.length).toBe(2048);
    expect(big.reduce((n, x) => n + x.lengthBytes, 0)).toBe(128 * 1024 * 1024);
    for (let i = 1; i < big.length; i++) expect(big[i]!.offsetBytes).toBe(big[i - 1]!.offsetBytes + big[i - 1]!.lengthBytes);
    expect(() => sliceRequest(0)).toThrow(RangeError);
    expect(() => sliceRequest(10, 0)).toThrow(RangeError);
  });

  test("rails: round robin over the rails that are up", () => {
    expect(assignRails(5, 2, () => true)).toEqual([0, 1, 0, 1, 0]);
    expect(assignRails(4, 3, (r) => r !== 1)).toEqual([0, 2, 0, 2]);
    expect(assignRails(3, 2, () => true, 1)).toEqual([1, 0, 1]);
    expect(assignRails(3, 2, () => false)).toEqual([]);
  });
});
