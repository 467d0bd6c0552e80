// Children started by `mooncake up` stop when `up` itself dies, even by kill -9 (which gives it no
// chance to stop them): `up` sets MOONCAKE_EXIT_WITH_PARENT=1, and the child checks once a second
// whether it has been re-parented. Linux's PR_SET_PDEATHSIG would do this, but is not reachable
// from Bun without FFI for a feature this small.

export const EXIT_WITH_PARENT_ENV = "MOONCAKE_EXIT_WITH_PARENT";

/** Calls `onOrphaned` once if this process's parent goes away (only when the env var is set). */
export function watchParent(onOrphaned: () => void, env: Record<string, string | undefined> = process.env): void {
  if (env[EXIT_WITH_PARENT_ENV] !== "1") return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onOrphaned();
    }
  }, 1000);
  (timer as { unref?: () => void }).unref?.();
}
