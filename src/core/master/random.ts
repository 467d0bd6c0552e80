// A small seeded pseudo-random generator for the master's placement choices. The state machine
// takes `random(): number` from outside; passing one built here with a known seed makes a replayed
// operation log reproduce the same placements (operations.ts), which Math.random cannot.

/** Returns a function yielding uniform numbers in [0, 1), determined entirely by `seed` (sfc32). */
export function seededRandom(seed: number): () => number {
  // sfc32 with the seed spread over its four words; 2^128 period, good enough for placement.
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // Discard the first outputs so nearby seeds do not start out correlated.
  for (let i = 0; i < 16; i++) next();
  return next;
}

/** A uniform integer in [0, n). `n` must be ≥ 1. */
export function randomIndex(random: () => number, n: number): number {
  const i = Math.floor(random() * n);
  return i < n ? i : n - 1;
}
