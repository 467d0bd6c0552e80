// Bytes from a stream delivered in arbitrary chunks, read back as contiguous pieces: the part every
// frame reader (master RPC frames, coro_rpc frames) shares. Copies only when a piece spans chunks.

export class ChunkQueue {
  private chunks: Uint8Array[] = [];
  private buffered = 0;

  /** Bytes pushed and not yet consumed. */
  get length(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array) {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The first `n` bytes (n ≤ length), contiguous; valid until the next push or consume. */
  peek(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    this.merge(n);
    return this.chunks[0]!.subarray(0, n);
  }

  /** Removes and returns the first `n` bytes (they may alias a pushed chunk: copy to keep). */
  take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const out = this.peek(n);
    this.consume(n);
    return out;
  }

  consume(n: number) {
    this.buffered -= n;
    while (n > 0) {
      const first = this.chunks[0]!;
      if (first.length > n) {
        this.chunks[0] = first.subarray(n);
        return;
      }
      n -= first.length;
      this.chunks.shift();
    }
  }

  /** Joins leading chunks until the first holds at least `n` bytes. */
  private merge(n: number) {
    let size = 0;
    let count = 0;
    while (size < n) size += this.chunks[count++]!.length;
    const joined = new Uint8Array(size);
    let offset = 0;
    for (let i = 0; i < count; i++) {
      joined.set(this.chunks[i]!, offset);
      offset += this.chunks[i]!.length;
    }
    this.chunks.splice(0, count, joined);
  }
}
