// escapeKey (one key, one line), keyPreview (a short prefix for error messages) and the master's
// invalidKeyReason, which builds on it: a 5,000-byte key must never be echoed whole.

import { describe, expect, test } from "bun:test";
import { escapeKey, KEY_PREVIEW_CHARS, keyPreview } from "./key-display.ts";
import { invalidKeyReason, MAX_KEY_BYTES } from "./master/objects.ts";
import { isWellFormed } from "./utf8.ts";

describe("escapeKey", () => {
  test("ordinary keys come back unchanged", () => {
    for (const k of ["plain", "meta-llama/Llama-3.1-8B@1@0@1f3a@bfloat16", "ключ/ü@%", "emoji 𝄞 ok", "a b"]) {
      expect(escapeKey(k)).toBe(k);
    }
  });

  test("newline, CR, tab, backslash, C0, DEL, C1 and U+2028/9 are escaped; the result has no line break", () => {
    expect(escapeKey("a\nb")).toBe("a\\nb");
    expect(escapeKey("a\r\nb\tc")).toBe("a\\r\\nb\\tc");
    expect(escapeKey("back\\slash")).toBe("back\\\\slash");
    expect(escapeKey("nul\u0000bel\u0007esc\u001b")).toBe("nul\\x00bel\\x07esc\\x1b");
    expect(escapeKey("del\u007f")).toBe("del\\x7f");
    expect(escapeKey("c1\u0085\u009b")).toBe("c1\\u0085\\u009b");
    expect(escapeKey("ls\u2028ps\u2029")).toBe("ls\\u2028ps\\u2029");
    // Every code point below U+00A0 in one key: one line, only printable ASCII left.
    let all = "";
    for (let c = 0; c < 0xa0; c++) all += String.fromCharCode(c);
    const out = escapeKey(all);
    expect(out).toMatch(/^[\x20-\x7e]+$/);
  });

  test("escaping is reversible: distinct keys stay distinct", () => {
    const keys = ["a\\nb", "a\nb", "a\\\nb", "a\\x0ab", "a\u000ab"];
    expect(new Set(keys.map(escapeKey)).size).toBe(new Set(keys).size);
  });
});

describe("keyPreview", () => {
  test("a short key is shown whole (escaped)", () => {
    expect(keyPreview("k")).toBe("k");
    expect(keyPreview("x".repeat(KEY_PREVIEW_CHARS))).toBe("x".repeat(KEY_PREVIEW_CHARS));
    expect(keyPreview("a\nb")).toBe("a\\nb");
  });

  test("a 5,000-byte key: its first 64 characters, an ellipsis and its length in bytes", () => {
    const key = "k".repeat(5000);
    const shown = keyPreview(key);
    expect(shown).toBe(`${"k".repeat(64)}… (5000 bytes)`);
    expect(shown.length).toBeLessThan(100);
  });

  test("the byte count is UTF-8, and a surrogate pair is never cut in half", () => {
    const key = "𝄞".repeat(100); // 4 bytes and 2 UTF-16 units each
    const shown = keyPreview(key);
    expect(shown).toBe(`${"𝄞".repeat(64)}… (400 bytes)`);
    expect(isWellFormed(shown)).toBe(true);
  });
});

describe("invalidKeyReason", () => {
  test("valid keys have none", () => {
    expect(invalidKeyReason("k")).toBeNull();
    expect(invalidKeyReason("k".repeat(MAX_KEY_BYTES))).toBeNull();
    expect(invalidKeyReason("line\nbreak")).toBeNull(); // control characters are allowed in keys
  });

  test("empty, over-long and lone-surrogate keys say why, in a short line", () => {
    expect(invalidKeyReason("")).toBe("empty key");
    const long = invalidKeyReason("k".repeat(5000))!;
    expect(long).toBe(`key too long (max 4096 bytes): ${"k".repeat(64)}… (5000 bytes)`);
    expect(long.length).toBeLessThan(150);
    // 4097 bytes from 2-byte characters: the count is in bytes, not characters.
    expect(invalidKeyReason("é".repeat(2049))).toContain("(4098 bytes)");
    expect(invalidKeyReason("a\ud800b")).toMatch(/^key is not valid Unicode/);
  });
});
