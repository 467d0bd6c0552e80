// The master's start-up exposure line: what a plain `mooncake master` says, and silence once the
// three bind flags keep every port on loopback.

import { describe, expect, test } from "bun:test";
import { exposureLine } from "../runtime/exposure.ts";
import { type MasterPorts, masterListeners } from "./exposure.ts";
import { resolveMasterSettings } from "./flags.ts";

const PORTS = { rpcPort: 50051, metricsPort: 9003, metadataPort: 8080 };
const masterExposureLine = (settings: Parameters<typeof masterListeners>[0], ports: MasterPorts) =>
  exposureLine(masterListeners(settings, ports));

describe("the master's exposure line", () => {
  test("Mooncake's defaults (all interfaces): one line naming all three ports and their flags", () => {
    expect(masterExposureLine(resolveMasterSettings({}, undefined, {}), PORTS)).toBe(
      "exposed without authentication beyond loopback: rpc 0.0.0.0:50051, " +
        "admin 0.0.0.0:9003 (mutating endpoints loopback-only), metadata 0.0.0.0:8080; " +
        "restrict with --rpc_address / --metrics_host / --http_metadata_server_host",
    );
  });

  test("all three bound to loopback: no line", () => {
    const settings = resolveMasterSettings(
      { rpc_address: "127.0.0.1", metrics_host: "::1", http_metadata_server_host: "localhost" },
      undefined,
      {},
    );
    expect(masterExposureLine(settings, PORTS)).toBeNull();
  });

  test("only the ports still open are named; no embedded metadata server, no metadata entry", () => {
    const settings = resolveMasterSettings({ rpc_address: "127.0.0.1", metrics_host: "10.0.0.7" }, undefined, {});
    expect(masterExposureLine(settings, { ...PORTS, metadataPort: null })).toBe(
      "exposed without authentication beyond loopback: admin 10.0.0.7:9003 (mutating endpoints loopback-only); restrict with --metrics_host",
    );
  });
});
