import { describe, expect, test } from "bun:test";
import { NULL_BULK, OK, RespParser, RespProtocolError, bulkParts, encode, errorReply, integer, nullReply } from "./codec.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const text = (cmds: Uint8Array[][]) => cmds.map((c) => c.map((a) => td.decode(a)));

describe("resp codec", () => {
  test("byte-exact replies", () => {
    expect(td.decode(OK)).toBe("+OK\r\n");
    expect(td.decode(integer(0))).toBe(":0\r\n");
    expect(td.decode(integer(1))).toBe(":1\r\n");
    expect(td.decode(NULL_BULK)).toBe("$-1\r\n");
    expect(td.decode(nullReply(true))).toBe("_\r\n");
    expect(td.decode(errorReply("ERR a\r\nb"))).toBe("-ERR a b\r\n");
    expect(td.decode(encode({ map: [["a", 1]] }, true))).toBe("%1\r\n$1\r\na\r\n:1\r\n");
    expect(td.decode(encode({ map: [["a", 1]] }, false))).toBe("*2\r\n$1\r\na\r\n:1\r\n");
    expect(td.decode(encode(["0", []]))).toBe("*2\r\n$1\r\n0\r\n*0\r\n");
  });

  test("bulkParts keeps the value by reference", () => {
    const value = te.encode("abc");
    const parts = bulkParts(value);
    expect(parts.map((p) => td.decode(p)).join("")).toBe("$3\r\nabc\r\n");
    expect(parts[1]).toBe(value);
    expect(bulkParts(null).map((p) => td.decode(p))).toEqual(["$-1\r\n"]);
    expect(bulkParts(null, true).map((p) => td.decode(p))).toEqual(["_\r\n"]);
  });

  test("split anywhere", () => {
    const wire = te.encode("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    const whole = text(new RespParser().feed(wire));
    expect(whole).toEqual([["SET", "k", "va\r\nl"], ["PING"], ["GET", "k"]]);
    for (let a = 0; a <= wire.length; a++) {
      for (let b = a; b <= wire.length; b += 3) {
        const p = new RespParser();
        const got = [...p.feed(wire.subarray(0, a)), ...p.feed(wire.subarray(a, b)), ...p.feed(wire.subarray(b))];
        expect(text(got)).toEqual(whole);
      }
    }
    const p = new RespParser();
    const got: Uint8Array[][] = [];
    for (const byte of wire) got.push(...p.feed(Uint8Array.of(byte)));
    expect(text(got)).toEqual(whole);
  });

  test("inline with quotes", () => {
    expect(text(new RespParser().feed(te.encode('set "a b" \'c\'\r\n\r\n')))).toEqual([["set", "a b", "c"]]);
  });

  test("inline arguments keep their bytes, UTF-8 or not (found by tests/fuzz)", () => {
    // A lone 0xa0 byte used to come out as the 3 bytes of U+FFFD: the inline splitter decoded text.
    const [cmd] = new RespParser().feed(Uint8Array.of(0x73, 0x65, 0x74, 0x20, 0x6b, 0x20, 0xa0, 0xff, 0x0a));
    expect(cmd!.map((a) => [...a])).toEqual([[0x73, 0x65, 0x74], [0x6b], [0xa0, 0xff]]);
    const [quoted] = new RespParser().feed(Uint8Array.of(0x22, 0xa0, 0x5c, 0xd0, 0xb6, 0x22, 0x0a)); // "\xa0\\ж"
    expect(quoted!.map((a) => [...a])).toEqual([[0xa0, 0xd0, 0xb6]]);
    expect(text(new RespParser().feed(te.encode("SET ключ 😀\r\n")))).toEqual([["SET", "ключ", "😀"]]);
  });

  test("maxArrayLength bounds inline commands too (found by tests/fuzz)", () => {
    const p = new RespParser({ maxArrayLength: 2 });
    expect(text(p.feed(te.encode("GET k\r\n")))).toEqual([["GET", "k"]]);
    expect(() => p.feed(te.encode("SET k v\r\n"))).toThrow("too many arguments in inline request");
    expect(() => p.feed(te.encode("PING\r\n"))).toThrow(RespProtocolError);
  });

  test("limits", () => {
    const p = new RespParser({ maxBulkBytes: 10 });
    expect(() => p.feed(te.encode("*2\r\n$3\r\nGET\r\n$11\r\n"))).toThrow(RespProtocolError);
    expect(() => p.feed(te.encode("PING\r\n"))).toThrow(RespProtocolError);
    expect(() => new RespParser({ maxArrayLength: 2 }).feed(te.encode("*3\r\n"))).toThrow("invalid multibulk length");
    expect(() => new RespParser().feed(te.encode("*1\r\nxx\r\n"))).toThrow("expected '$'");
    expect(() => new RespParser().feed(te.encode("*1\r\n$1\r\nab\r\n"))).toThrow("CRLF");
    expect(() => new RespParser({ maxInlineBytes: 8 }).feed(te.encode("x".repeat(9)))).toThrow("too big inline");
    expect(() => new RespParser({ maxBulkBytes: 10, maxPendingBytes: 15 }).feed(te.encode("*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$10\r\n"))).toThrow("too large");
  });
});
