// A same-host peer for src/transfer/shared-memory.test.ts, run as a separate process:
// maps the owner's segment by path, checks the owner's pattern in the first half, writes its own
// into the second half, and prints its hostIdentity() as the last line.
// Usage: bun tests/helpers/shm-peer.ts <sharePath> <sizeBytes> <ownerSeed> <peerSeed>

import { hostIdentity, SharedSegment } from "../../src/transfer/shared-memory.ts";

const [path, size, ownerSeed, peerSeed] = process.argv.slice(2);
if (path === undefined || size === undefined || ownerSeed === undefined || peerSeed === undefined) {
  console.error("usage: shm-peer.ts <sharePath> <sizeBytes> <ownerSeed> <peerSeed>");
  process.exit(2);
}
const sizeBytes = Number(size);
const half = sizeBytes / 2;
const mapping = SharedSegment.map(path, sizeBytes);
try {
  const owner = mapping.view(0, half);
  for (let i = 0; i < half; i += 4093) {
    if (owner[i] !== ((i * 31 + Number(ownerSeed)) & 255)) {
      console.error(`byte ${i} is ${owner[i]}, not the owner's pattern`);
      process.exit(1);
    }
  }
  const mine = mapping.view(half, half);
  for (let i = 0; i < half; i++) mine[i] = ((half + i) * 7 + Number(peerSeed)) & 255;
} finally {
  mapping.close();
}
console.log(hostIdentity());
