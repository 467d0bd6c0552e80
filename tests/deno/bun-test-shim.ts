// Lets the runtime-neutral tests under src/core run under Deno unchanged: deno.json maps the
// "bun:test" import here. describe/test/hooks map onto Deno.test; expect is Jest's (npm "expect"),
// which has the same matchers the core tests use.

import { expect as jestExpect } from "expect";

type Fn = () => void | Promise<void>;
interface Suite {
  name: string;
  beforeEach: Fn[];
  afterEach: Fn[];
  beforeAll: Fn[];
  afterAll: Fn[];
}

declare const Deno: {
  test(options: { name: string; fn: () => Promise<void>; sanitizeOps?: boolean; sanitizeResources?: boolean }): void;
};

const stack: Suite[] = [{ name: "", beforeEach: [], afterEach: [], beforeAll: [], afterAll: [] }];
const top = () => stack[stack.length - 1]!;

export const expect = jestExpect;

export function describe(name: string, body: () => void) {
  const suite: Suite = { name, beforeEach: [], afterEach: [], beforeAll: [], afterAll: [] };
  stack.push(suite);
  try {
    body();
  } finally {
    stack.pop();
  }
}

export function test(name: string, fn: Fn) {
  const suites = [...stack];
  const fullName = [...suites.map((s) => s.name).filter(Boolean), name].join(" > ");
  Deno.test({
    name: fullName,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      for (const s of suites) for (const h of s.beforeEach) await h();
      try {
        await fn();
      } finally {
        for (const s of [...suites].reverse()) for (const h of s.afterEach) await h();
      }
    },
  });
}
export const it = test;

export function beforeEach(fn: Fn) {
  top().beforeEach.push(fn);
}
export function afterEach(fn: Fn) {
  top().afterEach.push(fn);
}
/** Runs once, lazily, before the first test of the file that needs it (Deno has no suite hooks). */
export function beforeAll(fn: Fn) {
  let done: Promise<void> | null = null;
  top().beforeEach.push(() => (done ??= Promise.resolve(fn())));
}
export function afterAll(_fn: Fn) {
  // Core tests hold no resources that outlive the process; nothing to do under Deno.
}
