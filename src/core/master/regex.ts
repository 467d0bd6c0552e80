// Compiles the user-supplied patterns of GetReplicaListByRegex / RemoveByRegex. Mooncake runs an
// ECMAScript std::regex search over every key; JS RegExp is the same dialect. A regex runs inside
// the master's single event loop and a native RegExp cannot be interrupted, so one pathological
// pattern (catastrophic backtracking) against a few million keys would stall the whole cluster.
//
// The rule, checked before compiling (rejections are INVALID_PARAMS, like a syntax error):
// 1. The pattern is at most MAX_REGEX_LENGTH (256) UTF-16 units.
// 2. No backreferences (\1…\9, \k<name>): they make matching NP-hard.
// 3. No repeated group that itself contains a quantifier or an alternation, e.g. (a+)+, (a*)*,
//    (a|aa)*, (x|y){2,}: these are the exponential-backtracking shapes. A group under ? (at most
//    once) is fine; so are character classes, [ab]+ instead of (a|b)+.
// 4. At most MAX_UNBOUNDED_QUANTIFIERS (3) unbounded quantifiers (*, +, {n,}) in total: k of
//    them over overlapping characters cost O(len^(k+1)) per key in the worst case, so this keeps a
//    scan polynomial and small for real keys (LMCache keys are ~100 bytes; keys are ≤4096 bytes).
// With these, a scan's cost is bounded by keys × O(keyLength^4) in the worst case and is linear for
// the patterns people actually use (`^prefix`, `suffix$`, `^a.*b$`).

export const MAX_REGEX_LENGTH = 256;
export const MAX_UNBOUNDED_QUANTIFIERS = 3;

/** The compiled pattern, or null when it is invalid or outside the safe subset above. */
export function compileSafeRegex(pattern: unknown): RegExp | null {
  if (typeof pattern !== "string" || pattern.length > MAX_REGEX_LENGTH) return null;
  if (!withinSafeSubset(pattern)) return null;
  try {
    return new RegExp(pattern);
  } catch {
    return null;
  }
}

interface GroupInfo {
  /** The group's body contains a quantifier or an alternation (directly or in a nested group). */
  complex: boolean;
}

/**
 * A single left-to-right scan tracking groups. It does not validate syntax (RegExp does that);
 * it only has to see every quantifier, alternation, group and escape correctly.
 */
function withinSafeSubset(p: string): boolean {
  const stack: GroupInfo[] = [{ complex: false }];
  let unbounded = 0;
  // What the last atom was: a closed group (and whether it was complex), or something else.
  let lastAtomComplexGroup = false;
  let haveAtom = false;
  let i = 0;
  const top = (): GroupInfo => stack[stack.length - 1]!;
  while (i < p.length) {
    const c = p[i]!;
    if (c === "\\") {
      const d = p[i + 1] ?? "";
      if (/[1-9]/.test(d) || d === "k") return false;
      i += 2;
      haveAtom = true;
      lastAtomComplexGroup = false;
      continue;
    }
    if (c === "[") {
      // Skip the class; inside it only escapes and the closing bracket matter.
      i++;
      if (p[i] === "^") i++;
      if (p[i] === "]") i++;
      while (i < p.length && p[i] !== "]") i += p[i] === "\\" ? 2 : 1;
      i++;
      haveAtom = true;
      lastAtomComplexGroup = false;
      continue;
    }
    if (c === "(") {
      stack.push({ complex: false });
      // Skip the group prefix (?:, (?=, (?!, (?<=, (?<!, (?<name>.
      i++;
      if (p[i] === "?") {
        i++;
        if (p[i] === "<" && p[i + 1] !== "=" && p[i + 1] !== "!") {
          while (i < p.length && p[i] !== ">") i++;
        }
        i++;
      }
      haveAtom = false;
      continue;
    }
    if (c === ")") {
      if (stack.length > 1) {
        const g = stack.pop()!;
        if (g.complex) top().complex = true;
        lastAtomComplexGroup = g.complex;
      } else {
        lastAtomComplexGroup = false;
      }
      haveAtom = true;
      i++;
      continue;
    }
    if (c === "|") {
      top().complex = true;
      haveAtom = false;
      i++;
      continue;
    }
    if (c === "*" || c === "+" || c === "?" || (c === "{" && /^\{\d+(,\d*)?\}/.test(p.slice(i)))) {
      let repeats = c !== "?"; // can the atom match more than once?
      let isUnbounded = c === "*" || c === "+";
      if (c === "{") {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(p.slice(i))!;
        const max = m[2] === undefined ? Number(m[1]) : m[3] === "" ? Number.POSITIVE_INFINITY : Number(m[3]);
        repeats = max > 1;
        isUnbounded = max === Number.POSITIVE_INFINITY;
        i += m[0].length;
      } else {
        i++;
      }
      if (p[i] === "?") i++; // lazy variant
      if (haveAtom && repeats && lastAtomComplexGroup) return false;
      if (isUnbounded && ++unbounded > MAX_UNBOUNDED_QUANTIFIERS) return false;
      top().complex = true;
      lastAtomComplexGroup = false;
      continue;
    }
    haveAtom = true;
    lastAtomComplexGroup = false;
    i++;
  }
  return true;
}
