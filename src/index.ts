// mooncake as a library: the client API. `import { MooncakeStore } from "mooncake"` (or from this
// file's path in a checkout). See examples/put-get.ts.

export { MooncakeStore, type ReplicateConfig } from "./client/store.ts";
export { ErrorCode, errorName, MooncakeError } from "./core/errors.ts";
export { loadConfig } from "./config/load.ts";
export type { Config } from "./config/schema.ts";
