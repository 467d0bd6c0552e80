// How keys are shown to people: on one line (control characters escaped) and, in error messages,
// cut to a short prefix. Keys are arbitrary UTF-8 up to 4 KiB; echoing one whole buries the
// reason under kilobytes, and a raw newline in a key splits a listing's line in two.
// Runtime-neutral, like the rest of src/core.

import { utf8Length } from "./utf8.ts";

/** Code points of a key an error message shows before cutting it off. */
export const KEY_PREVIEW_CHARS = 64;

// C0 controls, DEL, C1 controls, backslash, and U+2028/U+2029 (which some terminals and editors
// also break lines on).
const NEEDS_ESCAPE = /[\u0000-\u001f\u007f-\u009f\\\u2028\u2029]/;
const ESCAPES = /[\u0000-\u001f\u007f-\u009f\\\u2028\u2029]/g;

function escapeOne(ch: string): string {
  switch (ch) {
    case "\\":
      return "\\\\";
    case "\n":
      return "\\n";
    case "\r":
      return "\\r";
    case "\t":
      return "\\t";
  }
  const c = ch.charCodeAt(0);
  // \xNN for one-byte code points and \uNNNN above, so the text pastes back into bash's $'…'
  // (there \xNN is a byte, which equals the code point only below U+0080).
  return c < 0x80 ? `\\x${c.toString(16).padStart(2, "0")}` : `\\u${c.toString(16).padStart(4, "0")}`;
}

/**
 * `key` on one line: `\` → `\\`, newline/CR/tab → `\n` `\r` `\t`, other C0 controls and DEL →
 * `\xNN`, C1 controls and U+2028/U+2029 → `\uNNNN`; everything else verbatim. Keys without those
 * characters (nearly all) come back unchanged, as the same string.
 */
export function escapeKey(key: string): string {
  return NEEDS_ESCAPE.test(key) ? key.replace(ESCAPES, escapeOne) : key;
}

/**
 * `key` for an error message: escaped, and when longer than `maxChars` code points, its first
 * `maxChars` followed by `…` and its length in UTF-8 bytes (`kkkk… (5000 bytes)`).
 */
export function keyPreview(key: string, maxChars = KEY_PREVIEW_CHARS): string {
  // Fast path: short keys (UTF-16 length bounds the code-point count).
  if (key.length <= maxChars) return escapeKey(key);
  let cut = 0;
  let points = 0;
  while (cut < key.length && points < maxChars) {
    const c = key.charCodeAt(cut);
    cut += c >= 0xd800 && c <= 0xdbff && cut + 1 < key.length ? 2 : 1; // never split a surrogate pair
    points++;
  }
  if (cut >= key.length) return escapeKey(key);
  return `${escapeKey(key.slice(0, cut))}… (${utf8Length(key)} bytes)`;
}
