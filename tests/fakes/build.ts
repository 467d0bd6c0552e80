// Builds the C stand-ins in tests/fakes/ (libfakeverbs.so, libfakecuda.so) from source with `cc`,
// against the real headers (<infiniband/verbs.h> from libibverbs-dev, cuda.h from the CUDA
// toolkit), so their struct layouts and signatures are the real ABI's. Built once per source
// content into a directory under the system temp dir; tests only, never shipped.
//
// Without a compiler or the headers the build fails with what to install: the tests that need a
// fake fail, they do not skip.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export type FakeName = "fakeverbs" | "fakecuda";

const HERE = import.meta.dirname;

/** Where cuda.h is: $CUDA_HOME/include, else the toolkit's standard locations. */
export function cudaIncludeDir(): string {
  const candidates = [
    process.env.CUDA_HOME && join(process.env.CUDA_HOME, "include"),
    "/usr/local/cuda/include",
    "/usr/local/cuda-13.0/include",
    "/usr/include",
  ].filter((d): d is string => typeof d === "string" && d.length > 0);
  const found = candidates.find((d) => existsSync(join(d, "cuda.h")));
  if (found === undefined) {
    throw new Error(
      `cannot build the fake libcuda: no cuda.h in ${candidates.join(", ")}; install the CUDA toolkit's headers or set CUDA_HOME`,
    );
  }
  return found;
}

const HINTS: Record<FakeName, string> = {
  fakeverbs: "install the C compiler and the libibverbs headers: apt-get install gcc libibverbs-dev",
  fakecuda: "install the C compiler (apt-get install gcc) and the CUDA toolkit's cuda.h (or set CUDA_HOME)",
};

/**
 * The absolute path of lib<name>.so, compiled if this source has not been built yet. Throws with
 * the compiler's output and what to install when the build fails.
 */
export function buildFake(name: FakeName): string {
  const source = resolve(HERE, `${name}.c`);
  const text = readFileSync(source);
  const includes = name === "fakecuda" ? ["-I", cudaIncludeDir()] : [];
  const flags = ["-std=gnu11", "-O2", "-g", "-Wall", "-Werror", "-shared", "-fPIC", ...includes];
  const hash = createHash("sha256").update(text).update(flags.join(" ")).digest("hex").slice(0, 16);
  const dir = join(tmpdir(), `mooncake-fakes-${hash}`);
  const out = join(dir, `lib${name}.so`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  // Build beside the final name and rename: test files run in parallel processes may race here.
  const partial = `${out}.${process.pid}.tmp`;
  let cc: ReturnType<typeof Bun.spawnSync>;
  try {
    cc = Bun.spawnSync(["cc", ...flags, "-o", partial, source, "-lpthread"], { stderr: "pipe", stdout: "pipe" });
  } catch (e) {
    throw new Error(`cannot run cc (${(e as Error).message}); ${HINTS[name]}`);
  }
  if (cc.exitCode !== 0) {
    throw new Error(`building lib${name}.so failed (cc exit ${cc.exitCode}); ${HINTS[name]}\n${cc.stderr?.toString() ?? ""}`);
  }
  renameSync(partial, out);
  return out;
}
