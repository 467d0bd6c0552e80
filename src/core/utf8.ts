// UTF-8 helpers for the hot paths: the byte length of a string without encoding it (key limits
// are in bytes, and checking them must not allocate on every request), and decoding a byte range
// to a string (keys in requests and in the master's key table) through the fastest decoder the
// runtime offers.

/** UTF-8 → string for bytes[start, end); invalid sequences become U+FFFD (TextDecoder's rules). */
export type Utf8Slicer = (bytes: Uint8Array, start: number, end: number) => string;

const utf8Decoder = new TextDecoder();
let slicer: Utf8Slicer = (bytes, start, end) => utf8Decoder.decode(bytes.subarray(start, end));

/**
 * Installs a faster decoder with TextDecoder's semantics. Keys are decoded once per key per
 * request, and TextDecoder needs a view object for each: Bun's Buffer#utf8Slice takes the range
 * itself and halves that cost (src/runtime/utf8.ts installs it).
 */
export function setUtf8Slicer(s: Utf8Slicer): void {
  slicer = s;
}

/** bytes[start, end) decoded as UTF-8, with the installed slicer. */
export function utf8Slice(bytes: Uint8Array, start: number, end: number): string {
  return slicer(bytes, start, end);
}

/** False when `s` has a lone surrogate (no UTF-8 form). O(1) for Latin-1 strings in JSC. */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed(); // ES2024, in Bun and Deno
}

/** Lone surrogates count as 3 bytes, as TextEncoder writes them as U+FFFD. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}
