// Garbage from socket reads, collected early. Bun hands each socket read to JS as a freshly
// allocated buffer; a 32 MiB transfer leaves 32 MiB of them behind. Left to its own heuristics the
// collector let about a gigabyte pile up in a store node before reclaiming it, and with freed
// memory kept for reuse (allocator.ts) that pile became resident memory. Asking for a collection
// every RECEIVED_BYTES_PER_GC bytes received keeps the pile, and so the process's size, small,
// and the same few pages get reused: no page faults, no growth.

const RECEIVED_BYTES_PER_GC = 64 * 1024 * 1024;

let receivedBytes = 0;

/** Counts `bytes` read from a socket; asks for a collection every RECEIVED_BYTES_PER_GC. */
export function noteReceived(bytes: number): void {
  receivedBytes += bytes;
  if (receivedBytes < RECEIVED_BYTES_PER_GC) return;
  receivedBytes = 0;
  Bun.gc(false);
}
