// ffi/ibverbs-abi.ts checked against the real ABI: a C program generated from its tables includes
// <infiniband/verbs.h>, prints sizeof / offsetof / member size for every struct and field and the
// value of every enum constant, and takes the address of every symbol we bind (so a missing or
// misspelled one fails the link against libibverbs). Any difference fails and names the field.
//
// Needs `cc` and the headers (Debian: libibverbs-dev). Without them this test FAILS, it does not
// skip: CI installs them, and a layout nobody checked is worse than a red test.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IBV_ENUMS, IBV_LAYOUTS, IBVERBS_SYMBOLS, type StructLayout } from "../../ffi/ibverbs-abi.ts";

const INSTALL_HINT = "install the C compiler and the libibverbs headers: apt-get install gcc libibverbs-dev";

/** The C source, generated from the TS tables: one output line per number it checks. */
function layoutProgram(): string {
  const lines = [
    "#include <stddef.h>",
    "#include <stdio.h>",
    "#include <infiniband/verbs.h>",
    "#define MEMBER_SIZE(T, m) sizeof(((T *)0)->m)",
    "int main(void) {",
  ];
  for (const [key, layout] of Object.entries(IBV_LAYOUTS) as [string, StructLayout][]) {
    lines.push(`  printf("size %s %zu\\n", ${JSON.stringify(key)}, sizeof(${layout.cType}));`);
    for (const field of Object.keys(layout.fields)) {
      lines.push(
        `  printf("field %s %s %zu %zu\\n", ${JSON.stringify(key)}, ${JSON.stringify(field)}, ` +
          `offsetof(${layout.cType}, ${field}), MEMBER_SIZE(${layout.cType}, ${field}));`,
      );
    }
  }
  for (const { prefix, values } of IBV_ENUMS) {
    for (const name of Object.keys(values)) {
      lines.push(`  printf("enum %s %lld\\n", "${prefix}${name}", (long long)(${prefix}${name}));`);
    }
  }
  // Address of each bound symbol (not a call: `ibv_query_port` is also a function-like macro, and
  // without a following "(" the name is the exported compat function).
  for (const name of Object.keys(IBVERBS_SYMBOLS)) {
    lines.push(`  { void *volatile p = (void *)&${name}; printf("symbol ${name} %d\\n", p != NULL); }`);
  }
  lines.push("  return 0;", "}", "");
  return lines.join("\n");
}

/** What the TS tables say, as the same lines the C program prints. */
function expectedLines(): string[] {
  const out: string[] = [];
  for (const [key, layout] of Object.entries(IBV_LAYOUTS) as [string, StructLayout][]) {
    out.push(`size ${key} ${layout.sizeBytes}`);
    for (const [field, { offset, sizeBytes }] of Object.entries(layout.fields)) out.push(`field ${key} ${field} ${offset} ${sizeBytes}`);
  }
  for (const { prefix, values } of IBV_ENUMS) for (const [name, v] of Object.entries(values)) out.push(`enum ${prefix}${name} ${v}`);
  for (const name of Object.keys(IBVERBS_SYMBOLS)) out.push(`symbol ${name} 1`);
  return out;
}

/** Lines that differ, each naming the struct and field (or constant) and both values. */
function compareLayout(actual: string[], expected: string[]): string[] {
  const keyOf = (line: string) => line.split(" ").slice(0, line.startsWith("field") ? 3 : 2).join(" ");
  const got = new Map(actual.map((l) => [keyOf(l), l]));
  const diffs: string[] = [];
  for (const want of expected) {
    const have = got.get(keyOf(want));
    if (have === want) continue;
    const [kind, ...rest] = want.split(" ");
    const haveValues = have?.split(" ").slice(kind === "field" ? 3 : 2) ?? ["(missing)"];
    if (kind === "field") {
      const [struct, field, offset, size] = rest;
      diffs.push(`${struct}.${field}: TS says offset ${offset} size ${size}, verbs.h says offset ${haveValues[0]} size ${haveValues[1]}`);
    } else if (kind === "size") {
      diffs.push(`sizeof ${rest[0]}: TS says ${rest[1]}, verbs.h says ${haveValues[0]}`);
    } else {
      diffs.push(`${kind} ${rest[0]}: TS says ${rest[1]}, C says ${haveValues[0]}`);
    }
  }
  return diffs;
}

const dir = mkdtempSync(join(tmpdir(), "mooncake-ibverbs-abi-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function compileAndRun(): string[] {
  const source = join(dir, "layout.c");
  const binary = join(dir, "layout");
  writeFileSync(source, layoutProgram());
  let cc: ReturnType<typeof Bun.spawnSync>;
  try {
    cc = Bun.spawnSync(["cc", "-std=gnu11", "-Wall", "-Werror", "-o", binary, source, "-libverbs"], { stderr: "pipe" });
  } catch (e) {
    throw new Error(`cannot run cc (${(e as Error).message}); ${INSTALL_HINT}`);
  }
  if (cc.exitCode !== 0) {
    const stderr = cc.stderr?.toString() ?? "";
    const missing = /infiniband\/verbs\.h|cannot find -libverbs/.test(stderr) ? "the libibverbs headers are missing: " : "";
    throw new Error(`cc failed (exit ${cc.exitCode}); ${missing}${INSTALL_HINT}\n${stderr}`);
  }
  const run = Bun.spawnSync([binary], { stderr: "pipe" });
  if (run.exitCode !== 0) throw new Error(`${binary} exited ${run.exitCode}: ${run.stderr?.toString() ?? ""}`);
  return run.stdout.toString().trim().split("\n");
}

describe("ffi/ibverbs-abi.ts against <infiniband/verbs.h>", () => {
  test("every struct size, field offset and size, enum value and symbol matches", () => {
    const diffs = compareLayout(compileAndRun(), expectedLines());
    expect(diffs).toEqual([]);
  });

  test("a wrong offset is reported by name", () => {
    const expected = expectedLines().map((l) => (l === "field ibv_wc qp_num 28 4" ? "field ibv_wc qp_num 24 4" : l));
    const actual = expectedLines();
    expect(compareLayout(actual, expected)).toEqual(["ibv_wc.qp_num: TS says offset 24 size 4, verbs.h says offset 28 size 4"]);
  });

  test("the inline verbs' slots are where the spec measured them (ctx + 8 + slot)", () => {
    const ops = IBV_LAYOUTS.ibv_context.fields;
    expect([ops["ops.poll_cq"].offset, ops["ops.req_notify_cq"].offset, ops["ops.post_send"].offset, ops["ops.post_recv"].offset]).toEqual([
      96, 104, 208, 216,
    ]);
  });
});
