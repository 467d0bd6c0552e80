// The server commands' first step once their options are valid: restart in place with allocator
// settings that keep freed memory (src/runtime/allocator.ts says why). Loaded lazily so `--help`
// and the short commands never touch bun:ffi.

export async function keepFreedMemory(): Promise<void> {
  const { keepFreedMemory: restart } = await import("../runtime/allocator.ts");
  restart();
}
