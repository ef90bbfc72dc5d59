// Deterministic, fast PRNG for corpus generation: xoshiro128** seeded through splitmix32.
//
// Everything the generator decides (tree shape, names, sizes, bytes) comes from one of these,
// so a given seed and GENERATOR_VERSION always give the same tar, byte for byte. Math.random is
// never used. 32-bit arithmetic only (Math.imul, >>> 0), so V8 keeps it in integer registers.

/** splitmix32: expands a seed into well-mixed 32-bit words (used only to seed xoshiro). */
function splitmix32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  /** @param {number} seed any 32-bit integer */
  constructor(seed) {
    const sm = splitmix32(seed);
    this.a = sm(); this.b = sm(); this.c = sm(); this.d = sm();
    if ((this.a | this.b | this.c | this.d) === 0) this.d = 1; // all-zero state is a fixed point
  }

  /** Next uniformly distributed unsigned 32-bit integer (xoshiro128**). */
  u32() {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a; this.d ^= this.b; this.b ^= this.c; this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** Uniform float in [0, 1). */
  float() { return this.u32() / 4294967296; }

  /** Uniform integer in [0, n). */
  int(n) { return Math.floor(this.float() * n); }

  /** Uniform integer in [lo, hi]. */
  range(lo, hi) { return lo + this.int(hi - lo + 1); }

  /** True with probability p. */
  chance(p) { return this.float() < p; }

  /** One element of a non-empty array. */
  pick(arr) { return arr[this.int(arr.length)]; }

  /** Standard normal deviate (Box-Muller; the second value is discarded for simplicity). */
  normal() {
    const u = 1 - this.float(); // (0, 1]
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.float());
  }

  /** Log-normal deviate whose median is `median` and whose log has standard deviation `sigma`. */
  logNormal(median, sigma) { return median * Math.exp(sigma * this.normal()); }

  /** Pareto deviate >= xm with shape alpha (heavy tail for small alpha). */
  pareto(xm, alpha) { return xm / Math.pow(1 - this.float(), 1 / alpha); }

  /**
   * Fills `bytes[off, off+len)` with PRNG output. The bulk goes through a Uint32Array view, four
   * bytes per step (~1 GB/s on one core); only the unaligned head and tail are done bytewise.
   * @param {Uint8Array} bytes
   */
  fill(bytes, off = 0, len = bytes.length - off) {
    let p = off;
    const end = off + len;
    const abs = bytes.byteOffset + p;
    const head = Math.min(len, (4 - (abs & 3)) & 3);
    for (let i = 0; i < head; i++) bytes[p++] = this.u32() & 0xff;
    const words = (end - p) >>> 2;
    if (words > 0) {
      const view = new Uint32Array(bytes.buffer, bytes.byteOffset + p, words);
      // Inlined xoshiro128** on locals: about 3x faster than calling u32() per word.
      let a = this.a, b = this.b, c = this.c, d = this.d;
      for (let i = 0; i < words; i++) {
        const x = Math.imul(b, 5);
        view[i] = Math.imul((x << 7) | (x >>> 25), 9);
        const t = b << 9;
        c ^= a; d ^= b; b ^= c; a ^= d;
        c ^= t;
        d = (d << 11) | (d >>> 21);
      }
      this.a = a; this.b = b; this.c = c; this.d = d;
      p += words * 4;
    }
    while (p < end) bytes[p++] = this.u32() & 0xff;
  }
}

function rotl(x, k) { return (x << k) | (x >>> (32 - k)); }
