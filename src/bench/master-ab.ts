// Same-minute A/B of master builds: on these shared VMs a machine's speed drifts by a quarter
// within a day, so a change is judged by alternating builds, not by comparing with an old table.
// Each round starts a fresh master per variant, warms it with a 2 s BatchPut, then runs each
// bench line once; medians over rounds are printed as a Markdown table (docs/PERFORMANCE.md).
//
//   bun src/bench/master-ab.ts --rounds 3 \
//     before=/tmp/old/dist/mooncake after=dist/mooncake 'after,-1=dist/mooncake MIMALLOC_PURGE_DELAY=-1'
//
// A variant is `name=binary [VAR=value ...]`. The bench client is always dist/mooncake.

import { existsSync } from "node:fs";
import { parseArgs } from "node:util";

const LINES: [operation: string, connections: number, inFlight: number][] = [
  ["batch-put", 2, 4],
  ["batch-put", 2, 8],
  ["batch-get", 2, 4],
  ["batch-exist", 2, 4],
  ["get", 1, 64],
  ["exist", 1, 64],
];
const RPC_PORT = 50_561;

function usage(message: string): never {
  console.error(`master-ab: ${message}\nusage: bun src/bench/master-ab.ts [--rounds N] [--seconds S] name=binary [VAR=value ...] ...`);
  process.exit(2);
}

let parsed: ReturnType<typeof parseOptions>;
function parseOptions() {
  return parseArgs({
    args: Bun.argv.slice(2),
    options: { rounds: { type: "string", default: "3" }, seconds: { type: "string", default: "4" } },
    allowPositionals: true,
  });
}
try {
  parsed = parseOptions();
} catch (e) {
  usage((e as Error).message);
}
const { values, positionals } = parsed;
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
if (!Number.isInteger(rounds) || rounds < 1) usage(`--rounds must be a positive integer, got ${values.rounds}`);
if (!(seconds > 0)) usage(`--seconds must be positive, got ${values.seconds}`);
const variants = positionals.map((spec) => {
  const eq = spec.indexOf("=");
  const [binary, ...vars] = spec.slice(eq + 1).split(" ");
  if (eq < 1 || !binary) usage(`variant "${spec}" is not name=binary [VAR=value ...]`);
  if (!existsSync(binary)) usage(`variant "${spec}": no file ${binary}`);
  return { name: spec.slice(0, eq), binary, env: Object.fromEntries(vars.map((v) => v.split("=") as [string, string])) };
});
if (variants.length === 0) usage("give at least one variant");

async function bench(operation: string, connections: number, inFlight: number, seconds: number): Promise<number> {
  const args = ["bench", "master", "--master", `127.0.0.1:${RPC_PORT}`, "--operation", operation];
  args.push("--connections", String(connections), "--in-flight", String(inFlight), "--keys", "100000");
  args.push("--batch-size", "128", "--duration", `${seconds}s`, "--json");
  const proc = Bun.spawn(["dist/mooncake", ...args], { stdout: "pipe", stderr: "inherit" });
  const timer = setTimeout(() => proc.kill(9), (seconds + 60) * 1000);
  const out = await new Response(proc.stdout).text();
  clearTimeout(timer);
  if ((await proc.exited) !== 0) throw new Error(`bench ${operation} failed`);
  return (JSON.parse(out) as { keysPerS: number }).keysPerS;
}

const results = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  for (const v of variants) {
    const master = Bun.spawn(
      [
        v.binary,
        "master",
        `--rpc_port=${RPC_PORT}`,
        "--rpc_address=127.0.0.1",
        "--metrics_port=9563",
        "--http_metadata_server_port=8590",
        "--enable_metric_reporting=false",
      ],
      // No durable state: each round starts empty (and older builds ignore the variable).
      { env: { ...process.env, MOONCAKE_STATE_DIR: "none", ...v.env }, stdout: "ignore", stderr: "ignore" },
    );
    try {
      await Bun.sleep(1200);
      await bench("batch-put", 2, 4, 2);
      for (const [op, c, f] of LINES) {
        const key = `${v.name}|${op}|${c}x${f}`;
        results.set(key, [...(results.get(key) ?? []), await bench(op, c, f, seconds)]);
      }
    } finally {
      master.kill(9);
      await master.exited;
    }
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`| bench flags | ${variants.map((v) => `${v.name}: median (runs)`).join(" | ")} |`);
console.log(`|---|${variants.map(() => "---").join("|")}|`);
for (const [op, c, f] of LINES) {
  const cells = variants.map((v) => {
    const xs = results.get(`${v.name}|${op}|${c}x${f}`)!;
    return `${median(xs).toLocaleString("en")} (${xs.join(" / ")})`;
  });
  console.log(`| \`--operation ${op} --connections ${c} --in-flight ${f}\` | ${cells.join(" | ")} |`);
}
