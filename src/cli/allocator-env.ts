// The server commands' first step once their options are valid: restart in place with the
// allocator settings of their role (src/runtime/allocator.ts says why). Loaded lazily so `--help`
// and the short commands never touch bun:ffi.

/** Store nodes, `up` and the benches: keep freed memory (the data path's received buffers). */
export async function keepFreedMemory(): Promise<void> {
  const { keepFreedMemory: restart } = await import("../runtime/allocator.ts");
  restart();
}

/** The master: hand freed memory back after 10 s, no JSC heap-block warm-up thread. */
export async function useMasterAllocator(): Promise<void> {
  const { useMasterAllocators } = await import("../runtime/allocator.ts");
  useMasterAllocators();
}
