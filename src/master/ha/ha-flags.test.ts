// `mooncake master` HA flags (flags.ts): Mooncake's --enable_ha, --ha_backend_type,
// --ha_backend_connstring and legacy --etcd_endpoints, and the refusals (exit 2 at the CLI) for
// what cannot work: another backend than etcd, no endpoints, an address or port clients could not
// be sent to, a local state directory.

import { describe, expect, test } from "bun:test";
import { ConfigError } from "../../config/errors.ts";
import { normalizeMasterArgs, resolveMasterSettings } from "../flags.ts";

const HA = { enable_ha: "true", rpc_address: "10.0.0.5", rpc_port: "50051" };
const resolve = (flags: Record<string, string>, env: Record<string, string> = {}) => resolveMasterSettings(flags, undefined, env);
const refusal = (flags: Record<string, string>, env: Record<string, string> = {}): string => {
  try {
    resolve(flags, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a ConfigError");
};

describe("HA flags", () => {
  test("off by default: no HA settings, the usual state directory", () => {
    const s = resolve({}, { HOME: "/home/u" });
    expect(s.ha).toBeNull();
    expect(s.stateDir).toBe("/home/u/.local/state/mooncake/mooncake_cluster");
  });

  test("--enable_ha with a connstring: etcd endpoints, the advertised rpc_address:rpc_port, no local state", () => {
    const s = resolve({ ...HA, ha_backend_connstring: "127.0.0.1:2379;127.0.0.2:2379" }, { HOME: "/home/u" });
    expect(s.ha).toEqual({
      backend: "etcd",
      endpoints: "127.0.0.1:2379;127.0.0.2:2379",
      endpointsFlag: "ha_backend_connstring",
      advertiseAddress: "10.0.0.5:50051",
      warmupMs: 500,
      readOnlyMs: 30_000,
    });
    expect(s.stateDir).toBeNull();
  });

  test("legacy --etcd_endpoints, an etcd:// prefix, IPv6, --ha_warmup_ms", () => {
    const s = resolve({ ...HA, rpc_address: "fd00::5", etcd_endpoints: "etcd://h1:2379;h2:2379", ha_warmup_ms: "5s" });
    expect(s.ha).toMatchObject({ endpoints: "h1:2379;h2:2379", endpointsFlag: "etcd_endpoints", advertiseAddress: "[fd00::5]:50051", warmupMs: 5000 });
  });

  test("gflags spellings normalise", () => {
    expect(normalizeMasterArgs(["--enable_ha", "--ha_backend_connstring=a:1;b:2", "--etcd_endpoints=x:1"])).toEqual([
      "--enable-ha=true",
      "--ha-backend-connstring=a:1;b:2",
      "--etcd-endpoints=x:1",
    ]);
  });

  test("redis and k8s are Mooncake backends this master does not implement; anything else is not a backend", () => {
    expect(refusal({ ...HA, ha_backend_type: "k8s", ha_backend_connstring: "h:1" })).toBe(
      "--ha_backend_type=k8s: only etcd is supported for master HA here (Mooncake's k8s backend is not implemented); " +
        "use --ha_backend_type=etcd --ha_backend_connstring=<host:2379;host:2379>",
    );
    expect(refusal({ ...HA, ha_backend_type: "redis", ha_backend_connstring: "h:1" })).toContain("redis backend is not implemented");
    expect(refusal({ ha_backend_type: "zookeeper" })).toBe('--ha_backend_type: expected etcd, got "zookeeper"');
    // Without HA Mooncake ignores the backend type; so do we, for the ones it knows.
    expect(resolve({ ha_backend_type: "redis" }).ha).toBeNull();
  });

  test("--enable_ha without endpoints, or with a malformed one", () => {
    expect(refusal(HA)).toContain("--enable_ha needs the etcd endpoints");
    expect(refusal({ ...HA, ha_backend_connstring: " ; " })).toContain("--enable_ha needs the etcd endpoints");
    expect(refusal({ ...HA, ha_backend_connstring: "h1:2379;h2:99999" })).toBe('--ha_backend_connstring: "h2:99999" is not an etcd endpoint (host:port)');
  });

  test("an RPC address or port clients could not be sent to, and a local state directory, are refused", () => {
    const c = { ha_backend_connstring: "h:2379" };
    expect(refusal({ ...c, enable_ha: "true", rpc_port: "50051" })).toContain('--rpc_address is "0.0.0.0"');
    expect(refusal({ ...c, ...HA, rpc_port: "0" })).toContain("--rpc_port is 0");
    expect(refusal({ ...c, ...HA, state_dir: "/var/lib/mc" })).toContain("with HA a master keeps no local state");
    expect(refusal({ ...c, ...HA }, { MOONCAKE_STATE_DIR: "/var/lib/mc" })).toContain("env MOONCAKE_STATE_DIR (state_dir)");
    expect(resolve({ ...c, ...HA, state_dir: "none" }).stateDir).toBeNull();
  });
});
