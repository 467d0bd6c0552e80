// The loopback test behind the admin server's mutating endpoints, and the shared start-up line.

import { describe, expect, test } from "bun:test";
import { type Logger, logger } from "../core/log.ts";
import { exposureLine, isLoopbackAddress, isLoopbackHost, logExposure } from "./exposure.ts";

describe("isLoopbackAddress", () => {
  test("loopback callers", () => {
    for (const a of ["127.0.0.1", "127.1.2.3", "127.255.255.254", "::1", "0:0:0:0:0:0:0:1", "[::1]", "::ffff:127.0.0.1", "::FFFF:127.9.8.7", "::ffff:7f00:1", "0:0:0:0:0:ffff:127.0.0.1"]) {
      expect([a, isLoopbackAddress(a)]).toEqual([a, true]);
    }
  });

  test("everyone else, and anything unparsable", () => {
    for (const a of [
      "10.0.0.5",
      "192.168.1.1",
      "128.0.0.1",
      "126.255.255.255",
      "0.0.0.0",
      "::ffff:10.0.0.1",
      "::ffff:128.0.0.1",
      "fe80::1",
      "fe80::1%lo",
      "::",
      "::2",
      "1::1",
      "::1:1",
      "::127.0.0.1", // IPv4-compatible, deprecated: not the mapped form
      "127.0.0.256",
      "127.0.0",
      "localhost", // a name, never what a socket reports
      "",
      "garbage",
      ":::1",
      "1:2:3:4:5:6:7:8:9",
    ]) {
      expect([a, isLoopbackAddress(a)]).toEqual([a, false]);
    }
  });

  test("isLoopbackHost also takes the name localhost (what a server may be bound to)", () => {
    expect(isLoopbackHost("localhost")).toBe(true);
    expect(isLoopbackHost("127.0.0.1")).toBe(true);
    expect(isLoopbackHost("0.0.0.0")).toBe(false);
    expect(isLoopbackHost("node1.example")).toBe(false);
  });
});

describe("exposureLine", () => {
  test("names every port beyond loopback, with its note, and each way to restrict it once", () => {
    expect(
      exposureLine([
        { name: "rpc", host: "0.0.0.0", port: 50051, restrictWith: "--rpc_address" },
        { name: "admin", host: "0.0.0.0", port: 9003, note: "mutating endpoints loopback-only", restrictWith: "--metrics_host" },
        { name: "metadata", host: "::", port: 8080, restrictWith: "--http_metadata_server_host" },
        { name: "data", host: "10.0.0.1", port: 15000, restrictWith: "--metrics_host" },
      ]),
    ).toBe(
      "exposed without authentication beyond loopback: rpc 0.0.0.0:50051, admin 0.0.0.0:9003 (mutating endpoints loopback-only), " +
        "metadata [::]:8080, data 10.0.0.1:15000; restrict with --rpc_address / --metrics_host / --http_metadata_server_host",
    );
  });

  test("loopback and authenticated ports are left out; none left means no line", () => {
    expect(
      exposureLine([
        { name: "rpc", host: "127.0.0.1", port: 1, restrictWith: "a" },
        { name: "admin", host: "::1", port: 2, restrictWith: "b" },
        { name: "metadata", host: "localhost", port: 3, restrictWith: "c" },
        { name: "resp", host: "0.0.0.0", port: 4, restrictWith: "d", authenticated: true },
      ]),
    ).toBeNull();
    expect(exposureLine([])).toBeNull();
    expect(
      exposureLine([
        { name: "rpc", host: "127.0.0.1", port: 1, restrictWith: "a" },
        { name: "lm", host: "node1", port: 5, restrictWith: "b" },
      ]),
    ).toBe("exposed without authentication beyond loopback: lm node1:5; restrict with b");
  });
});

describe("logExposure", () => {
  const recorder = () => {
    const lines: string[] = [];
    const base = logger("test");
    const log: Logger = { ...base, warn: (m) => lines.push(`warn ${m}`), debug: (m) => lines.push(`debug ${m}`) };
    return { log, lines };
  };

  test("one warning when something is exposed, one debug line when not", () => {
    const a = recorder();
    logExposure(a.log, [{ name: "metadata", host: "0.0.0.0", port: 8080, restrictWith: "--host" }]);
    expect(a.lines).toEqual(["warn exposed without authentication beyond loopback: metadata 0.0.0.0:8080; restrict with --host"]);
    const b = recorder();
    logExposure(b.log, [{ name: "metadata", host: "127.0.0.1", port: 8080, restrictWith: "--host" }]);
    expect(b.lines).toEqual(["debug no port exposed beyond loopback (metadata bound to loopback or authenticated)"]);
  });
});
