// Reproducible pseudo-random bytes for tests: xorshift32 words from a seed, so a writer and a
// reader (even in another process) agree on a value without sending it. Fast enough for 32 MiB.

export function pseudoRandomBytes(sizeBytes: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(sizeBytes / 4));
  let x = Math.imul(seed | 0, 2654435761) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer, 0, sizeBytes);
}
