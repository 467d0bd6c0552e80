// A store node's start-up exposure line: the engine binds local_hostname's IP (all interfaces
// for a name), the gateways the host as given; a RESP gateway with a password is not "without
// authentication".

import { describe, expect, test } from "bun:test";
import { exposureLine } from "../runtime/exposure.ts";
import { type StoreNodePorts, storeNodeListeners } from "./exposure.ts";

const storeNodeExposureLine = (p: StoreNodePorts) => exposureLine(storeNodeListeners(p));

describe("a store node's exposure line", () => {
  test("a node on 127.0.0.1 (gateways too) says nothing", () => {
    expect(
      storeNodeExposureLine({ localHostname: "127.0.0.1:15000", dataPort: 1, handshakePort: 15000, resp: { port: 6379, authenticated: false }, lm: { port: 65432 } }),
    ).toBeNull();
  });

  test("a host name binds the engine on all interfaces; the gateways on the name", () => {
    expect(storeNodeExposureLine({ localHostname: "node1", dataPort: 40001, handshakePort: 15001, lm: { port: 65432 } })).toBe(
      "exposed without authentication beyond loopback: data 0.0.0.0:40001, handshake 0.0.0.0:15001, lm node1:65432; " +
        "restrict with local_hostname=<one interface's IP>",
    );
  });

  test("an interface IP is named as bound; a RESP gateway with a password is left out", () => {
    expect(
      storeNodeExposureLine({ localHostname: "10.0.0.3", dataPort: 2, handshakePort: 3, resp: { port: 6379, authenticated: true }, lm: null }),
    ).toBe("exposed without authentication beyond loopback: data 10.0.0.3:2, handshake 10.0.0.3:3; restrict with local_hostname=<one interface's IP>");
    expect(storeNodeExposureLine({ localHostname: "[::1]:7", dataPort: 2, handshakePort: 7, resp: { port: 6379, authenticated: false } })).toBeNull();
  });
});
