import { describe, expect, test } from "bun:test";
import { ConfigError } from "./errors.ts";
import { findJsonError } from "./json-position.ts";
import { formatSource, loadConfig, parseMooncakeStoreUrl, WARNED_PID_ENV, warningsToReport } from "./load.ts";
import { CONFIG_KEYS, defaults, KEYS } from "./schema.ts";

/** A loader over in-memory files, so each test states its whole input. */
function load(files: Record<string, string>, options: Parameters<typeof loadConfig>[0] = {}) {
  return loadConfig({
    env: {},
    ...options,
    readFile: (path) => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error("nope"), { code: "ENOENT" });
      return text;
    },
  });
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

const LMCACHE_YAML = `chunk_size: 256
remote_url: "mooncakestore://10.0.0.1:50051/?device=mlx5_0"
remote_serde: "naive"
local_cpu: False
max_local_cpu_size: 100
extra_config:
  local_hostname: "10.0.0.2"
  metadata_server: "http://10.0.0.1:8080/metadata"
  protocol: "rdma"
  device_name: "erdma_0"
  master_server_address: "10.0.0.9:50051"
  global_segment_size: 32212254720
  local_buffer_size: "2GB"
  transfer_timeout: 1
  save_chunk_meta: False
`;

describe("defaults", () => {
  test("match LMCache and Mooncake (lmcache-and-users.md §1.2, mooncake-store-spec.md §6.3)", () => {
    const { config, sources } = load({});
    expect(config.chunk_size).toBe(256);
    expect(config.global_segment_size).toBe(3355443200);
    expect(config.local_buffer_size).toBe(1073741824);
    expect(config.protocol).toBe("tcp");
    expect(config.metadata_server).toBe("P2PHANDSHAKE");
    expect(config.master_server_address).toBe("127.0.0.1:50051");
    expect(config.transfer_timeout).toBe(1);
    expect(config.save_chunk_meta).toBe(true);
    expect(config.remote_serde).toBe("naive");
    expect(config.client_http_port).toBe(9300);
    expect(config.rpc_timeout_ms).toBe(30000);
    for (const key of CONFIG_KEYS) expect(sources[key]).toEqual({ kind: "default" });
  });
  test("every default passes its own validation", () => {
    const d = defaults();
    for (const key of CONFIG_KEYS) expect(d[key]).toBe(KEYS[key].default);
  });
});

describe("LMCache YAML", () => {
  test("reads top-level and extra_config keys with their lines", () => {
    const { config, sources, files } = load({ "c.yaml": LMCACHE_YAML }, { configFile: "c.yaml" });
    expect(files).toEqual(["c.yaml"]);
    expect(config.global_segment_size).toBe(32212254720);
    expect(config.local_buffer_size).toBe(2 * 1024 ** 3);
    expect(config.protocol).toBe("rdma");
    expect(config.local_cpu).toBe(false);
    expect(config.save_chunk_meta).toBe(false);
    expect(sources.global_segment_size).toEqual({ kind: "file", file: "c.yaml", line: 12 });
    expect(formatSource(sources.chunk_size)).toBe("file c.yaml:1");
  });

  test("remote_url mooncakestore:// overrides master address and device from the file", () => {
    const { config, sources } = load({ "c.yaml": LMCACHE_YAML }, { configFile: "c.yaml" });
    expect(config.master_server_address).toBe("10.0.0.1:50051");
    expect(config.device_name).toBe("mlx5_0");
    expect(formatSource(sources.master_server_address)).toBe("remote_url (file c.yaml:2)");
  });

  test("LMCACHE_CONFIG_FILE names the file when --config is absent", () => {
    const { config } = load({ "env.yaml": "chunk_size: 16\n" }, { env: { LMCACHE_CONFIG_FILE: "env.yaml" } });
    expect(config.chunk_size).toBe(16);
  });

  test("a Mooncake JSON config passed with --config: store keys at the top level", () => {
    const json = `{\n  "local_hostname": "h1",\n  "global_segment_size": "8GB"\n}\n`;
    const { config, sources, warnings } = load({ "m.json": json }, { configFile: "m.json" });
    expect(config.local_hostname).toBe("h1");
    expect(config.global_segment_size).toBe(8 * 1024 ** 3);
    expect(sources.global_segment_size).toEqual({ kind: "file", file: "m.json", line: 3 });
    expect(warnings).toEqual([]);
  });

  test("LMCache-only keys pass without warnings; unknown keys warn with the closest key", () => {
    const yaml = "chunk_sise: 5\nlocal_disk: file:///tmp\nextra_config:\n  metadata_sever: x\n  zzzzzzzz: 1\n";
    const { warnings } = load({ "c.yaml": yaml }, { configFile: "c.yaml" });
    expect(warnings).toEqual([
      "c.yaml:1: unknown key 'chunk_sise' (did you mean 'chunk_size'?); ignored",
      "c.yaml:4: unknown key 'extra_config.metadata_sever' (did you mean 'metadata_server'?); ignored",
      "c.yaml:5: unknown key 'extra_config.zzzzzzzz'; ignored",
    ]);
  });

  test("an empty file is an empty config", () => {
    expect(load({ "e.yaml": "" }, { configFile: "e.yaml" }).config.chunk_size).toBe(256);
  });
});

describe("precedence: flags > MOONCAKE_*/MC_* env > remote_url > MOONCAKE_CONFIG_PATH > LMCACHE_* env > YAML", () => {
  const files = {
    "c.yaml": "chunk_size: 16\nextra_config:\n  local_hostname: from-yaml\n  protocol: tcp\n  tenant_id: yaml\n",
    "m.json": '{"local_hostname": "from-json", "protocol": "rdma"}',
  };
  test("each layer beats the one below it", () => {
    const env = {
      MOONCAKE_CONFIG_PATH: "m.json",
      LMCACHE_CHUNK_SIZE: "32",
      LMCACHE_EXTRA_CONFIG: '{"tenant_id": "lmcache-env"}',
      MOONCAKE_LOCAL_HOSTNAME: "from-env",
      MC_RPC_TIMEOUT_MS: "5000",
    };
    const { config, sources } = load(files, { configFile: "c.yaml", env, flags: { protocol: "TCP" } });
    expect(config.chunk_size).toBe(32);
    expect(sources.chunk_size).toEqual({ kind: "env", name: "LMCACHE_CHUNK_SIZE" });
    expect(config.tenant_id).toBe("lmcache-env");
    expect(config.local_hostname).toBe("from-env");
    expect(config.protocol).toBe("tcp");
    expect(sources.protocol).toEqual({ kind: "flag", name: "--protocol" });
    expect(config.rpc_timeout_ms).toBe(5000);
  });
  test("MOONCAKE_CONFIG_PATH JSON beats the YAML's extra_config", () => {
    const { config, sources } = load(files, { configFile: "c.yaml", env: { MOONCAKE_CONFIG_PATH: "m.json" } });
    expect(config.local_hostname).toBe("from-json");
    expect(sources.local_hostname).toEqual({ kind: "file", file: "m.json", line: 1 });
  });
  test("remote_url does not override MOONCAKE_MASTER or a flag", () => {
    const yaml = 'remote_url: "mooncakestore://10.0.0.1:50051/"\n';
    const viaEnv = load({ "c.yaml": yaml }, { configFile: "c.yaml", env: { MOONCAKE_MASTER: "10.9.9.9:1" } });
    expect(viaEnv.config.master_server_address).toBe("10.9.9.9:1");
    const viaFlag = load({ "c.yaml": yaml }, { configFile: "c.yaml", flags: { master_server_address: "h:2" } });
    expect(viaFlag.config.master_server_address).toBe("h:2");
  });
  test("empty env values count as unset", () => {
    expect(load({}, { env: { MOONCAKE_PROTOCOL: "" } }).config.protocol).toBe("tcp");
  });
  test("remote_url given as a flag still sets the master", () => {
    const { config } = load({}, { flags: { remote_url: "mooncakestore://m:7000" } });
    expect(config.master_server_address).toBe("m:7000");
  });
});

describe("bad input: clear errors that name the place", () => {
  test("YAML syntax error names file, line and column", () => {
    const yaml = "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\ng: [1, 2\nh: 3\n";
    const e = errorOf(() => load({ "bad.yaml": yaml }, { configFile: "bad.yaml" }));
    expect(e.message).toStartWith("bad.yaml:7:4: YAML syntax error");
    expect(e.exitCode).toBe(2);
  });
  test("JSON syntax error names file, line and column", () => {
    const e = errorOf(() => load({ "m.json": '{\n  "protocol": "tcp",\n}\n' }, { env: { MOONCAKE_CONFIG_PATH: "m.json" } }));
    expect(e.message).toBe("m.json:3:1: JSON syntax error: expected a quoted key, got '}'");
  });
  test("wrong type: global_segment_size: lots", () => {
    const e = errorOf(() => load({ "c.yaml": "extra_config:\n  global_segment_size: lots\n" }, { configFile: "c.yaml" }));
    expect(e.message).toBe('c.yaml:2: invalid global_segment_size: expected a size such as 3355443200 or "80GB", got "lots"');
  });
  test("negative sizes, out-of-range ints, bad enums and bools", () => {
    expect(errorOf(() => load({}, { flags: { global_segment_size: "-1" } })).message).toContain("--global-segment-size");
    expect(errorOf(() => load({}, { env: { MOONCAKE_CLIENT_HTTP_PORT: "70000" } })).message).toBe(
      "MOONCAKE_CLIENT_HTTP_PORT: invalid client_http_port: expected 1..65535, got 70000",
    );
    expect(errorOf(() => load({}, { flags: { protocol: "carrier-pigeon" } })).message).toContain("expected one of tcp, rdma");
    expect(errorOf(() => load({}, { env: { MOONCAKE_OFFLOAD_ENABLED: "maybe" } })).message).toContain("true or false");
    expect(errorOf(() => load({}, { flags: { chunk_size: "0" } })).message).toContain("expected 1..");
  });
  test("a zero size where one is needed", () => {
    const e = errorOf(() =>
      load({}, { command: "mooncake store", positive: ["global_segment_size"], flags: { global_segment_size: 0 } }),
    );
    expect(e.message).toBe("--global-segment-size: global_segment_size must be greater than 0 for mooncake store, got 0");
  });
  test("missing required keys for a store node are all named, with where to set them", () => {
    const e = errorOf(() =>
      load(
        {},
        {
          command: "mooncake store",
          required: ["local_hostname", "metadata_server", "master_server_address"],
          flags: { local_hostname: "h" },
        },
      ),
    );
    expect(e.message).toStartWith("mooncake store needs the keys metadata_server, master_server_address;");
    expect(e.message).toContain("MOONCAKE_TE_META_DATA_SERVER");
    expect(e.message).toContain("--master-server-address");
  });
  test("extra_config that is not a mapping", () => {
    const e = errorOf(() => load({ "c.yaml": "extra_config: [1, 2]\n" }, { configFile: "c.yaml" }));
    expect(e.message).toBe("c.yaml:1: extra_config must be a mapping of keys to values");
  });
  test("a top level that is not a mapping", () => {
    const e = errorOf(() => load({ "c.yaml": "- a\n- b\n" }, { configFile: "c.yaml" }));
    expect(e.message).toBe("c.yaml:1: expected a mapping of keys to values at the top level");
  });
  test("a missing file", () => {
    expect(errorOf(() => load({}, { configFile: "nope.yaml" })).message).toBe(
      "cannot read config file nope.yaml (--config): no such file",
    );
  });
  test("LMCACHE_EXTRA_CONFIG that is not JSON", () => {
    expect(errorOf(() => load({}, { env: { LMCACHE_EXTRA_CONFIG: "{bad" } })).message).toStartWith(
      "LMCACHE_EXTRA_CONFIG:1:2: JSON syntax error",
    );
  });
});

describe("warnings are reported once per command", () => {
  test("the same process (also after an in-place restart: same PID, env passed on) gets them once", () => {
    const env: Record<string, string | undefined> = {};
    const warnings = load({ "x.yaml": "bogus_key: 1\n" }, { configFile: "x.yaml" }).warnings;
    expect(warnings).toEqual(["x.yaml:1: unknown key 'bogus_key'; ignored"]);
    expect(warningsToReport(warnings, env, 4242)).toEqual(warnings);
    expect(env[WARNED_PID_ENV]).toBe("4242");
    // The restarted image loads the same config again with the environment it inherited.
    const again = { ...env };
    expect(warningsToReport(warnings, again, 4242)).toEqual([]);
  });

  test("a child process (another PID) reports its own; no warnings leave the env alone", () => {
    const env: Record<string, string | undefined> = { [WARNED_PID_ENV]: "4242" };
    expect(warningsToReport(["w"], env, 4343)).toEqual(["w"]);
    const clean: Record<string, string | undefined> = {};
    expect(warningsToReport([], clean, 1)).toEqual([]);
    expect(clean[WARNED_PID_ENV]).toBeUndefined();
  });
});

describe("remote_url", () => {
  test("parses host, port and device; ignores other schemes", () => {
    expect(parseMooncakeStoreUrl("mooncakestore://10.1.2.3:50051/?device=mlx5_1")).toEqual({
      masterAddress: "10.1.2.3:50051",
      device: "mlx5_1",
    });
    expect(parseMooncakeStoreUrl("mooncakestore://h:1")).toEqual({ masterAddress: "h:1", device: null });
    expect(parseMooncakeStoreUrl("redis://h:6379")).toBeNull();
  });
  test("rejects several hosts and a missing port, as LMCache does", () => {
    expect(() => parseMooncakeStoreUrl("mooncakestore://a:1,b:2/")).toThrow("only one host");
    expect(() => parseMooncakeStoreUrl("mooncakestore://a/")).toThrow("needs a host and a port");
  });
});

describe("findJsonError", () => {
  test("valid JSON has no error; errors carry line and column", () => {
    expect(findJsonError('{"a": [1, 2.5e3, true, null, "x\\u0041"]}')).toBeNull();
    expect(findJsonError('{"a": tru}')).toEqual({ line: 1, column: 7, message: "unexpected 't'" });
    expect(findJsonError('{"a": 1}\n x')?.line).toBe(2);
    expect(findJsonError('"abc')?.message).toBe("unterminated string");
    expect(findJsonError("[".repeat(600))?.message).toBe("nesting too deep");
  });
});
