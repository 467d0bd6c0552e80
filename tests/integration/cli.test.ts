// The CLI as an operator meets it: help, usage errors (exit 2, one-line reason and usage), config
// errors without stack traces, `inspect config`, config warnings printed once, completion scripts,
// `metadata` start and stop (and its JSON body rule).

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI_FROM_SOURCE, cleanEnv, run, start } from "../helpers/process.ts";

const cli = (...args: string[]) => run([...CLI_FROM_SOURCE, ...args]);
const tmp = mkdtempSync(join(tmpdir(), "mooncake-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("help and usage errors", () => {
  test("--help lists the commands and the exit codes", async () => {
    const r = await cli("--help");
    expect(r.exitCode).toBe(0);
    for (const word of ["metadata", "inspect", "completion", "Exit codes:"]) expect(r.stdout).toContain(word);
  });

  test("an unknown option exits 2 with the reason and the command's usage", async () => {
    const r = await cli("inspect", "config", "--bogus");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(
      "error: unknown option '--bogus'\nUsage: mooncake inspect config [options]\nRun 'mooncake inspect config --help' for details.\n",
    );
  });

  test("an unknown command exits 2 and suggests the closest", async () => {
    const r = await cli("inspct");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("(Did you mean inspect?)");
  });

  test("a bad --log-format exits 2", async () => {
    const r = await cli("--log-format", "xml", "inspect", "config");
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("Allowed choices are text, json");
  });
});

describe("inspect config", () => {
  test("the README example: values and sources as JSON", async () => {
    const r = await cli("inspect", "config", "--config", "examples/mooncake-config.yaml", "--json");
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.master_server_address).toEqual({
      value: "127.0.0.1:50051",
      source: "remote_url (file examples/mooncake-config.yaml:5)",
    });
    expect(out.metadata_server).toEqual({
      value: "http://127.0.0.1:8080/metadata",
      source: "file examples/mooncake-config.yaml:11",
    });
    expect(out.global_segment_size).toEqual({ value: 3355443200, source: "file examples/mooncake-config.yaml:15" });
    expect(out.protocol).toEqual({ value: "tcp", source: "file examples/mooncake-config.yaml:12" });
    expect(out.tenant_id).toEqual({ value: "default", source: "default" });
  });

  test("env and flags show up as sources; secrets are masked", async () => {
    const r = await run([...CLI_FROM_SOURCE, "inspect", "config", "--global-segment-size", "8GB"], {
      env: { MOONCAKE_PROTOCOL: "rdma", MOONCAKE_CONFIG_PATH: "", LMCACHE_EXTRA_CONFIG: '{"password": "hunter2"}' },
    });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/global_segment_size +8589934592 +flag --global-segment-size/);
    expect(r.stdout).toMatch(/protocol +rdma +env MOONCAKE_PROTOCOL/);
    expect(r.stdout).toMatch(/password +\*\*\* +env LMCACHE_EXTRA_CONFIG/);
    expect(r.stdout).not.toContain("hunter2");
  });

  test("a YAML syntax error on line 7: exit 2, file and line, no stack trace", async () => {
    const file = join(tmp, "broken.yaml");
    writeFileSync(file, "chunk_size: 256\nremote_serde: naive\nlocal_cpu: false\nextra_config:\n  protocol: tcp\n  device_name: ''\n  local_hostname: [oops\n");
    const r = await cli("inspect", "config", "--config", file);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toStartWith(`mooncake: ${file}:7:`);
    expect(r.stderr).not.toContain("    at ");
  });

  test("a wrong type names the key, file and line", async () => {
    const file = join(tmp, "lots.yaml");
    writeFileSync(file, "extra_config:\n  global_segment_size: lots\n");
    const r = await cli("inspect", "config", "--config", file);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(
      `mooncake: ${file}:2: invalid global_segment_size: expected a size such as 3355443200 or "80GB", got "lots"\n`,
    );
  });

  test("an unknown key is a warning with the closest known key, not an error", async () => {
    const file = join(tmp, "typo.yaml");
    writeFileSync(file, "extra_config:\n  global_segmnt_size: 1GB\n");
    const r = await cli("inspect", "config", "--config", file, "--json");
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain("unknown key 'extra_config.global_segmnt_size' (did you mean 'global_segment_size'?)");
    expect(JSON.parse(r.stdout).global_segment_size.source).toBe("default");
  });

  test("an unknown key's warning is printed once, also by `store`, which restarts itself at start", async () => {
    const file = join(tmp, "unknown-once.yaml");
    writeFileSync(file, "chunk_size: 256\nbogus_key: 1\nextra_config:\n  local_hostname: 127.0.0.1\n  nonsense: 2\n");
    const inspect = await cli("inspect", "config", "--config", file);
    expect(inspect.stderr.split("unknown key 'bogus_key'").length - 1).toBe(1);
    // Without MIMALLOC_PURGE_DELAY the store restarts in place (execve) once before running, and
    // loads the config again; a dead master then ends it quickly (exit 1).
    const env = cleanEnv();
    delete env.MIMALLOC_PURGE_DELAY;
    const proc = Bun.spawn(
      [...CLI_FROM_SOURCE, "store", "--config", file, "--master-server-address", "127.0.0.1:1", "--metadata-server", "http://127.0.0.1:1/metadata"],
      { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    try {
      const stderr = await new Response(proc.stderr).text();
      expect(await proc.exited).toBe(1);
      expect(stderr.split("unknown key 'bogus_key'").length - 1).toBe(1);
      expect(stderr.split("unknown key 'extra_config.nonsense'").length - 1).toBe(1);
    } finally {
      clearTimeout(timer);
      proc.kill("SIGKILL");
    }
  });

  test("--log-format json makes warnings JSON lines", async () => {
    const file = join(tmp, "typo2.yaml");
    writeFileSync(file, "chunk_sise: 1\n");
    const r = await cli("--log-format", "json", "inspect", "config", "--config", file);
    expect(JSON.parse(r.stderr.trim().split("\n")[0]!)).toMatchObject({ level: "warn", component: "config" });
  });
});

describe("completion", () => {
  for (const shell of ["bash", "zsh", "fish"]) {
    test(`completion ${shell} prints a script that calls back 'mooncake complete'`, async () => {
      const r = await cli("completion", shell);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain("mooncake");
      expect(r.stdout).toContain("complete");
      expect(r.stdout.length).toBeGreaterThan(200);
    });
  }

  test("the suggestions include subcommands and options", async () => {
    const commands = await cli("complete", "--", "");
    expect(commands.stdout).toContain("inspect");
    expect(commands.stdout).toContain("metadata");
    const options = await cli("complete", "--", "inspect", "config", "--glo");
    expect(options.stdout).toContain("--global-segment-size");
  });

  test("an unknown shell exits 2", async () => {
    expect((await cli("completion", "tcsh")).exitCode).toBe(2);
  });
});

describe("metadata", () => {
  test("serves /metadata and stops with exit 0 on SIGTERM", async () => {
    const server = start([...CLI_FROM_SOURCE, "metadata", "--port=0", "--host", "127.0.0.1"]);
    try {
      const [, url] = await server.waitFor(/url=(http:\/\/127\.0\.0\.1:\d+\/metadata)/);
      expect(await (await fetch(`${url}?key=k`, { method: "PUT", body: '{"v":1}' })).text()).toBe("metadata updated");
      expect(await (await fetch(`${url}?key=k`)).text()).toBe('{"v":1}');
      const bad = await fetch(`${url}?key=k`, { method: "PUT", body: "v" });
      expect(bad.status).toBe(400);
      expect(await bad.text()).toStartWith("invalid JSON body: ");
      expect(await (await fetch(`${url}?key=k`)).text()).toBe('{"v":1}');
      server.proc.kill("SIGTERM");
      expect(await server.proc.exited).toBe(0);
      // Bound to loopback: no exposure warning.
      expect(server.stderr()).not.toContain("exposed without authentication");
    } finally {
      server.kill();
    }
  });

  test("--accept-any-body stores bodies that are not JSON, as Mooncake's server does", async () => {
    const server = start([...CLI_FROM_SOURCE, "--log-level", "debug", "metadata", "--port=0", "--host", "127.0.0.1", "--accept-any-body"]);
    try {
      const [, url] = await server.waitFor(/url=(http:\/\/127\.0\.0\.1:\d+\/metadata)/);
      // The start-up exposure check ran and found only loopback.
      await server.waitFor(/no port exposed beyond loopback \(metadata bound/);
      expect(await (await fetch(`${url}?key=k`, { method: "PUT", body: "v" })).text()).toBe("metadata updated");
      expect(await (await fetch(`${url}?key=k`)).text()).toBe("v");
    } finally {
      server.kill();
    }
  });

  test("a port that is taken is a clear error, exit 1", async () => {
    const blocker = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    try {
      const r = await cli("metadata", "--host", "127.0.0.1", "--port", String(blocker.port));
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${blocker.port}`);
      expect(r.stderr).not.toContain("    at ");
    } finally {
      await blocker.stop(true);
    }
  });

  test("bad flag values exit 2", async () => {
    expect((await cli("metadata", "--port", "http")).exitCode).toBe(2);
    expect((await cli("metadata", "--max-body-size", "huge")).exitCode).toBe(2);
  });
});
