// `mooncake master` flag resolution for the bind and metadata-body flags: defaults are Mooncake's
// (all interfaces, any body refused only by us), each flag is read in both spellings.

import { describe, expect, test } from "bun:test";
import { normalizeMasterArgs, resolveMasterSettings } from "./flags.ts";

describe("bind addresses", () => {
  test("default to all interfaces, as Mooncake's", () => {
    const s = resolveMasterSettings({}, undefined, {});
    expect([s.rpcAddress, s.metricsHost, s.httpMetadataServerHost]).toEqual(["0.0.0.0", "0.0.0.0", "0.0.0.0"]);
  });

  test("--rpc_address, --metrics_host and --http_metadata_server_host each set their own", () => {
    const s = resolveMasterSettings({ rpc_address: "127.0.0.1", metrics_host: "10.0.0.2", http_metadata_server_host: "::1" }, undefined, {});
    expect([s.rpcAddress, s.metricsHost, s.httpMetadataServerHost]).toEqual(["127.0.0.1", "10.0.0.2", "::1"]);
    expect(s.sources.metrics_host).toBe("flag");
  });
});

describe("--http_metadata_server_accept_any_body", () => {
  test("off by default; on in gflags, kebab and --no forms", () => {
    expect(resolveMasterSettings({}, undefined, {}).httpMetadataServerAcceptAnyBody).toBe(false);
    expect(resolveMasterSettings({ http_metadata_server_accept_any_body: "true" }, undefined, {}).httpMetadataServerAcceptAnyBody).toBe(true);
    expect(normalizeMasterArgs(["--http_metadata_server_accept_any_body"])).toEqual(["--http-metadata-server-accept-any-body=true"]);
    expect(normalizeMasterArgs(["--nohttp_metadata_server_accept_any_body"])).toEqual(["--http-metadata-server-accept-any-body=false"]);
  });

  test("read from --config_path like every flag", async () => {
    const file = `/tmp/mooncake-flags-test-${process.pid}.json`;
    await Bun.write(file, JSON.stringify({ http_metadata_server_accept_any_body: true, http_metadata_server_host: "127.0.0.1" }));
    try {
      const s = resolveMasterSettings({}, file, {});
      expect(s.httpMetadataServerAcceptAnyBody).toBe(true);
      expect(s.httpMetadataServerHost).toBe("127.0.0.1");
    } finally {
      await Bun.file(file).delete();
    }
  });
});
