import { describe, expect, test } from "bun:test";
import { metadataServerFor } from "./metadata-discovery.ts";

describe("metadataServerFor", () => {
  const at = (address: string, metadataServer: string) => metadataServerFor({ address, metadataServer });
  test("an unspecified bind host becomes the host the master was reached at", () => {
    expect(at("10.1.2.3:50051", "http://0.0.0.0:8080/metadata")).toBe("http://10.1.2.3:8080/metadata");
    expect(at("[fd00::5]:50051", "http://[::]:8080/metadata")).toBe("http://[fd00::5]:8080/metadata");
  });
  test("a specific bind host is kept", () => {
    expect(at("10.1.2.3:50051", "http://127.0.0.1:9999/metadata")).toBe("http://127.0.0.1:9999/metadata");
  });
  test("none, or nothing usable: null", () => {
    expect(at("10.1.2.3:50051", "")).toBeNull();
    expect(at("10.1.2.3:50051", "not a url")).toBeNull();
    expect(at("10.1.2.3:50051", "etcd://h:2379")).toBeNull();
  });
});
