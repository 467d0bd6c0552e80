import { afterEach, describe, expect, test } from "bun:test";
import { configureLog, logger } from "./log.ts";

describe("log", () => {
  const lines: string[] = [];
  afterEach(() => {
    lines.length = 0;
    configureLog({ level: "info", format: "text", sink: (l) => console.error(l) });
  });

  test("text lines carry level, component and fields; lower levels are dropped", () => {
    configureLog({ level: "info", format: "text", sink: (l) => lines.push(l) });
    const log = logger("master");
    log.debug("hidden");
    log.info("Master service started on port 50051", { metrics_port: 9003, note: "two words" });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}\[master\] Master service started on port 50051 metrics_port=9003 note="two words"$/,
    );
  });

  test("json lines parse and hold the fields", () => {
    configureLog({ level: "debug", format: "json", sink: (l) => lines.push(l) });
    logger("store").debug("mounted", { sizeBytes: 42 });
    const parsed = JSON.parse(lines[0]!);
    expect(parsed).toMatchObject({ level: "debug", component: "store", message: "mounted", sizeBytes: 42 });
  });
});
