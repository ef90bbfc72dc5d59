// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as ext4's metadata_csum and VHDX
// headers use it. Table-driven, eight bytes per step ("slicing-by-8").

const POLY = 0x82f63b78;
const TABLES: Uint32Array[] = (() => {
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[i] = c >>> 0;
  }
  const tables = [t0];
  for (let t = 1; t < 8; t++) {
    const prev = tables[t - 1]!;
    const next = new Uint32Array(256);
    for (let i = 0; i < 256; i++) next[i] = (prev[i]! >>> 8) ^ t0[prev[i]! & 0xff]!;
    tables.push(next);
  }
  return tables;
})();

/**
 * Continues a CRC-32C over `bytes`. `crc` is the raw register value (start with 0xFFFFFFFF
 * for the standard CRC and invert the result, or pass ext4's seeds as they are).
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = crc >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; i + 8 <= n; i += 8) {
    const a = (c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))) >>> 0;
    c =
      t7[a & 0xff]! ^
      t6[(a >>> 8) & 0xff]! ^
      t5[(a >>> 16) & 0xff]! ^
      t4[a >>> 24]! ^
      t3[bytes[i + 4]!]! ^
      t2[bytes[i + 5]!]! ^
      t1[bytes[i + 6]!]! ^
      t0[bytes[i + 7]!]!;
  }
  for (; i < n; i++) c = (c >>> 8) ^ t0[(c ^ bytes[i]!) & 0xff]!;
  return c >>> 0;
}

/** The standard CRC-32C of `bytes` (initial value and final XOR 0xFFFFFFFF). */
export function crc32c(bytes: Uint8Array): number {
  return (crc32cUpdate(0xffffffff, bytes) ^ 0xffffffff) >>> 0;
}
