import { describe, expect, test } from "bun:test";
import { ErrorCode, MooncakeError, errorName, isErrorCode } from "./errors.ts";

describe("ErrorCode", () => {
  test("integers match Mooncake's include/types.h", () => {
    // Spot checks across every band of the table (mooncake-store-spec.md §2.4).
    expect(ErrorCode.OK).toBe(0);
    expect(ErrorCode.NO_AVAILABLE_HANDLE).toBe(-200);
    expect(ErrorCode.INVALID_VERSION).toBe(-300);
    expect(ErrorCode.ILLEGAL_CLIENT).toBe(-601);
    expect(ErrorCode.REPLICA_IS_NOT_READY).toBe(-703);
    expect(ErrorCode.OBJECT_NOT_FOUND).toBe(-704);
    expect(ErrorCode.OBJECT_ALREADY_EXISTS).toBe(-705);
    expect(ErrorCode.OBJECT_HAS_LEASE).toBe(-706);
    expect(ErrorCode.LEASE_EXPIRED).toBe(-707);
    expect(ErrorCode.TRANSFER_FAIL).toBe(-800);
    expect(ErrorCode.RPC_TIMEOUT).toBe(-901);
    expect(ErrorCode.UNAVAILABLE_IN_CURRENT_STATUS).toBe(-1010);
    expect(ErrorCode.FILE_INVALID_HANDLE).toBe(-1106);
    expect(ErrorCode.TENANT_NOT_EMPTY).toBe(-1702);
  });

  test("every integer is unique and the table is complete", () => {
    const codes = Object.values(ErrorCode);
    expect(new Set(codes).size).toBe(codes.length);
    expect(codes.length).toBe(72);
  });

  test("errorName maps both ways and reports unknown integers", () => {
    for (const [name, code] of Object.entries(ErrorCode)) expect(errorName(code)).toBe(name);
    expect(errorName(-12345)).toBe("UNKNOWN_ERROR(-12345)");
    expect(isErrorCode(-704)).toBe(true);
    expect(isErrorCode(-705.5)).toBe(false);
  });

  test("MooncakeError carries the code and a readable message", () => {
    const e = new MooncakeError(ErrorCode.OBJECT_NOT_FOUND, "key 'a'");
    expect(e.code).toBe(-704);
    expect(e.message).toBe("OBJECT_NOT_FOUND: key 'a'");
    expect(e).toBeInstanceOf(Error);
  });
});
