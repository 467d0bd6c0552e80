// The bytes tests/integration/small-puts.test.ts and its child process put under a key: derived
// from the key, so any reader can check them without being told.

import { pseudoRandomBytes } from "./bytes.ts";

export function valueFor(key: string, sizeBytes: number): Uint8Array {
  let seed = 2166136261;
  for (let i = 0; i < key.length; i++) seed = Math.imul(seed ^ key.charCodeAt(i), 16777619) >>> 0;
  return pseudoRandomBytes(sizeBytes, seed);
}
