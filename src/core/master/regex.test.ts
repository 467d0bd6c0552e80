import { describe, expect, test } from "bun:test";
import { compileSafeRegex, MAX_REGEX_LENGTH } from "./regex.ts";

describe("compileSafeRegex", () => {
  test("accepts ordinary key patterns", () => {
    for (const p of [
      "^vllm@",
      "@abc$",
      "^vllm@Llama-3.1-8B@1@0@.*$",
      "chunk-[0-9]+",
      "(?:prefix)-\\d{2,4}",
      "^a.*b.*c$",
      "(ab)+",
      "(a|b)?x",
      "[(|)*+]+",
      "x{3}",
    ]) {
      expect(compileSafeRegex(p)).not.toBeNull();
    }
  });

  test("rejects invalid syntax", () => {
    for (const p of ["(", "[a-", "*a", "a{2,1}", "(?<n>a"]) expect(compileSafeRegex(p)).toBeNull();
  });

  test("rejects pathological (catastrophic-backtracking) patterns", () => {
    for (const p of [
      "(a+)+$",
      "(a*)*b",
      "(a|aa)*c",
      "(x|y){2,}",
      "((ab)*)+",
      "(a?){20}",
      "(.*)*x",
      "(\\w+\\s?)+$",
      "(a)\\1",
      "(?<n>a)\\k<n>",
      "a*a*a*a*b", // four unbounded quantifiers
    ]) {
      expect(compileSafeRegex(p)).toBeNull();
    }
  });

  test("rejects overlong patterns and non-strings", () => {
    expect(compileSafeRegex("a".repeat(MAX_REGEX_LENGTH))).not.toBeNull();
    expect(compileSafeRegex("a".repeat(MAX_REGEX_LENGTH + 1))).toBeNull();
    expect(compileSafeRegex(42)).toBeNull();
  });

  test("behaves like std::regex_search: unanchored, no flags", () => {
    const re = compileSafeRegex("b+c")!;
    expect(re.test("aabbbcd")).toBe(true);
    expect(re.flags).toBe("");
  });
});
