// `mooncake metadata`: the standalone HTTP metadata server the transfer engine uses for peer
// discovery, byte-compatible with Mooncake's `mooncake_http_metadata_server` (same flags, same
// answers). The master embeds the same server, so most clusters do not need this command.

import { type Command, Option } from "@commander-js/extra-typings";
import { parseSize } from "../core/units.ts";
import { ConfigError } from "../config/errors.ts";
import { applyLogOptions } from "./config-options.ts";

export function registerMetadata(program: Command<[], { logLevel: string; logFormat: string }>) {
  program
    .command("metadata")
    .description(
      "run the HTTP metadata server (GET/PUT/DELETE /metadata?key=K) for transfer-engine peer discovery;\n" +
        "clients use metadata_server: http://<host>:<port>/metadata",
    )
    .addOption(new Option("--port <port>", "TCP port").default("8080"))
    .addOption(new Option("--host <address>", "interface to bind").default("0.0.0.0"))
    .addOption(new Option("--max-body-size <size>", "largest value a PUT may store (e.g. 1MB)").default("1MB"))
    .addOption(
      new Option(
        "--accept-any-body",
        "store PUT bodies that are not JSON, as Mooncake's server does (default: 400 `invalid JSON body`)",
      ),
    )
    .addHelpText(
      "after",
      "\nExposure: reads and writes need no authentication (as in Mooncake), and the default --host\n" +
        "0.0.0.0 serves every interface; the server logs a warning naming the port when it is reachable\n" +
        "beyond loopback. Bind one interface with --host (e.g. --host 10.0.0.1, or 127.0.0.1 on one machine).",
    )
    .action(async (options) => {
      applyLogOptions(program.opts());
      const port = Number(options.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new ConfigError(`--port: expected a port 0..65535, got "${options.port}"`);
      }
      const size = parseSize(options.maxBodySize);
      if (!size.ok || size.bytes <= 0) {
        throw new ConfigError(`--max-body-size: ${size.ok ? "must be greater than 0" : size.error}`);
      }
      const { runMetadataServer } = await import("../metadata/run.ts");
      await runMetadataServer({ host: options.host, port, maxBodyBytes: size.bytes, acceptAnyBody: options.acceptAnyBody === true });
    });
}
