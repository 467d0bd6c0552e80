// Latency samples and percentiles for every benchmark. Samples go into one preallocated array
// (bounded: past `capacity`, reservoir sampling keeps an unbiased subset), so recording costs no
// allocation on the measured path.

export interface Percentiles {
  count: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export class LatencyRecorder {
  private readonly samples: Float64Array;
  private stored = 0;
  private seen = 0;
  private sumMs = 0;
  private maxMs = 0;

  constructor(capacity = 2_000_000) {
    this.samples = new Float64Array(capacity);
  }

  record(ms: number) {
    this.seen++;
    this.sumMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
    if (this.stored < this.samples.length) {
      this.samples[this.stored++] = ms;
      return;
    }
    const slot = Math.floor(Math.random() * this.seen);
    if (slot < this.samples.length) this.samples[slot] = ms;
  }

  get count(): number {
    return this.seen;
  }

  percentiles(): Percentiles {
    const sorted = this.samples.slice(0, this.stored).sort();
    const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
    const us = (ms: number) => Math.round(ms * 1000 * 10) / 10;
    return {
      count: this.seen,
      meanUs: us(this.seen === 0 ? 0 : this.sumMs / this.seen),
      p50Us: us(at(0.5)),
      p90Us: us(at(0.9)),
      p99Us: us(at(0.99)),
      p999Us: us(at(0.999)),
      maxUs: us(this.maxMs),
    };
  }
}
