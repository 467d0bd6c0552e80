// The bytes tests/integration/small-puts.test.ts and its child process put under a key: derived
// from the key, so any reader can check them without being told.

export function valueFor(key: string, sizeBytes: number): Uint8Array {
  const out = new Uint8Array(sizeBytes);
  let x = 2166136261;
  for (let i = 0; i < key.length; i++) x = Math.imul(x ^ key.charCodeAt(i), 16777619) >>> 0;
  for (let i = 0; i < sizeBytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
