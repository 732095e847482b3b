// One seeded pseudo-random generator for everything that must draw the same numbers on every run: random unit
// tests, the differential test's configurations and the benchmarks' workloads.

/** mulberry32: small, fast, and the same on every machine; numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
