/** A copy of `bytes[start, end)` as a plain Uint8Array (never a Buffer, so decoded records compare equal whatever the input type). */
export function copyBytes(bytes: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(bytes.subarray(start, end));
}
