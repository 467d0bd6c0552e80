// Where a worker thread's module is, from source and inside the compiled binary. `bun build
// --compile` embeds each worker entry point (compile/build.ts WORKER_ENTRY_POINTS) at its path
// relative to the entry points' common directory (src/), under /$bunfs/root/, while
// import.meta.url of bundled code names the binary itself; so a path relative to the calling
// module only works from source.

/**
 * The URL to give `new Worker()` for `srcPath` (relative to src/, e.g. "transfer/rdma/nic-worker.ts"),
 * called with the caller's import.meta.url and the same module's path relative to the caller.
 */
export function workerUrl(srcPath: string, callerUrl: string, relativeToCaller: string): string {
  if (callerUrl.includes("/$bunfs/")) return `file:///$bunfs/root/${srcPath}`;
  return new URL(relativeToCaller, callerUrl).href;
}
