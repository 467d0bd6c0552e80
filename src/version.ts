// Version and commit of this build. `compile/build.ts` stamps both into the binary with --define;
// when running from source they come from package.json and read "dev".

import pkg from "../package.json" with { type: "json" };

declare const MOONCAKE_BUILD_VERSION: string;
declare const MOONCAKE_BUILD_COMMIT: string;
declare const MOONCAKE_BUILD_DATE: string;

export const VERSION: string = typeof MOONCAKE_BUILD_VERSION === "string" ? MOONCAKE_BUILD_VERSION : pkg.version;
export const COMMIT: string = typeof MOONCAKE_BUILD_COMMIT === "string" ? MOONCAKE_BUILD_COMMIT : "dev";
export const BUILD_DATE: string = typeof MOONCAKE_BUILD_DATE === "string" ? MOONCAKE_BUILD_DATE : "unbuilt";

/** The store protocol version Mooncake clients check in ServiceReady (coro-rpc-golden.md). */
export const STORE_PROTOCOL_VERSION = "2.0.0";
