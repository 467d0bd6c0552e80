// Release build: compiles src/cli/main.ts into the single `dist/mooncake` binary, stamps version,
// commit and date into it, writes its SHA-256 and smoke-tests it.
//   bun compile/build.ts [--target bun-linux-x64|bun-linux-x64-musl|bun-linux-arm64] [--outfile PATH]

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

const root = resolve(import.meta.dirname, "..");
const args = process.argv.slice(2);
const argValue = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const target = argValue("--target");
const outfile = resolve(root, argValue("--outfile") ?? "dist/mooncake");

/** Every module started with `new Worker(new URL("./x.ts", import.meta.url))`. */
const WORKER_ENTRY_POINTS = ["src/transfer/rdma/nic-worker.ts"];

/** Names under which the binary acts as one subcommand (src/cli/main.ts INVOKED_AS). */
const DROP_IN_NAMES = ["mooncake_master", "mooncake_http_metadata_server"];

function git(...gitArgs: string[]): string | null {
  const r = Bun.spawnSync(["git", ...gitArgs], { cwd: root, stdout: "pipe", stderr: "ignore" });
  return r.exitCode === 0 ? r.stdout.toString().trim() : null;
}

const commitHash = git("rev-parse", "--short=12", "HEAD") ?? "unknown";
const dirty = git("status", "--porcelain", "--untracked-files=no");
const commit = dirty ? `${commitHash}-dirty` : commitHash;
const date = new Date().toISOString().slice(0, 10);

mkdirSync(dirname(outfile), { recursive: true });
const command = [
  process.execPath,
  "build",
  "--compile",
  "--minify",
  "--bytecode",
  "--format=esm",
  ...(target ? [`--target=${target}`] : []),
  `--define=MOONCAKE_BUILD_VERSION=${JSON.stringify(pkg.version)}`,
  `--define=MOONCAKE_BUILD_COMMIT=${JSON.stringify(commit)}`,
  `--define=MOONCAKE_BUILD_DATE=${JSON.stringify(date)}`,
  join(root, "src/cli/main.ts"),
  // Worker threads are separate entry points in a compiled binary (Bun resolves new Worker(url) to them).
  ...WORKER_ENTRY_POINTS.map((p) => join(root, p)),
  "--outfile",
  outfile,
];
const build = Bun.spawnSync(command, { cwd: root, stdout: "inherit", stderr: "inherit" });
if (build.exitCode !== 0) {
  console.error(`build failed (exit ${build.exitCode})`);
  process.exit(1);
}

const sha = createHash("sha256").update(readFileSync(outfile)).digest("hex");
writeFileSync(`${outfile}.sha256`, `${sha}  ${basename(outfile)}\n`);

for (const name of DROP_IN_NAMES) {
  const link = join(dirname(outfile), name);
  try {
    unlinkSync(link);
  } catch {}
  symlinkSync(basename(outfile), link);
}

// Smoke test, only when the binary is for this machine.
if (!target || target === `bun-${process.platform}-${process.arch}`) {
  const version = Bun.spawnSync([outfile, "--version"], { stdout: "pipe", stderr: "pipe" });
  const text = version.stdout.toString().trim();
  if (version.exitCode !== 0 || !text.includes(pkg.version) || !text.includes(commit)) {
    console.error(`smoke test failed: '${outfile} --version' printed "${text}" (exit ${version.exitCode})`);
    process.exit(1);
  }
  const help = Bun.spawnSync([outfile, "--help"], { stdout: "pipe", stderr: "pipe" });
  if (help.exitCode !== 0 || !help.stdout.toString().includes("Commands:")) {
    console.error(`smoke test failed: '${outfile} --help' exited ${help.exitCode}`);
    process.exit(1);
  }
  console.log(text);
}
console.log(`${outfile} (${(readFileSync(outfile).length / 2 ** 20).toFixed(1)} MiB, sha256 ${sha.slice(0, 16)}…)`);
