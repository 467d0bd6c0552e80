// ffi/ibverbs.ts against the real libibverbs (this host has no RDMA NIC, so: no device, and the
// reason says so), against a bogus MOONCAKE_LIBIBVERBS (the reason names the path and the
// packages), and against a fake libibverbs built here from <infiniband/verbs.h>, so every wrapper
// reads what a C provider writes into the real structs. Last, `mooncake store --protocol rdma`
// from source in those three setups. Needs cc and libibverbs-dev (Debian), as
// tests/abi/ibverbs-layout.test.ts does; without them the fake-library tests fail, naming them.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { storeNodeCommand } from "../tests/helpers/cluster.ts";
import { buildFake } from "../tests/fakes/build.ts";
import { CLI_FROM_SOURCE, run } from "../tests/helpers/process.ts";
import { IBV_LINK_LAYER, IBV_MTU, IBV_PORT, IBVERBS_SYMBOLS } from "./ibverbs-abi.ts";
import { listRdmaDevices, NO_RDMA_DEVICE } from "./ibverbs.ts";

const MODULE = resolve(import.meta.dir, "ibverbs.ts");
const BOGUS = "/nonexistent/mooncake-test/libibverbs.so.1";

// Implements every symbol in IBVERBS_SYMBOLS (bun:ffi's dlopen needs them all); those the wrappers
// here do not use fail with ENOSYS. Fields next to the ones we read get marker values, so a read
// at a wrong offset or width returns something else.
const FAKE_SOURCE = `
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <infiniband/verbs.h>
#undef ibv_query_port
static struct ibv_device devs[2];
struct ibv_device **ibv_get_device_list(int *n) {
  const char *env = getenv("FAKE_IBV_DEVICES");
  if (env && strcmp(env, "fail") == 0) { errno = ENOSYS; return NULL; }
  int count = env ? atoi(env) : 2;
  struct ibv_device **list = calloc(count + 1, sizeof *list);
  for (int i = 0; i < count; i++) { strcpy(devs[i].name, i == 0 ? "fake_0" : "fake_1"); list[i] = &devs[i]; }
  *n = count;
  return list;
}
void ibv_free_device_list(struct ibv_device **list) { free(list); }
const char *ibv_get_device_name(struct ibv_device *d) { return d->name; }
struct ibv_context *ibv_open_device(struct ibv_device *d) {
  struct ibv_context *ctx = calloc(1, sizeof *ctx); ctx->device = d; ctx->async_fd = -1; return ctx;
}
int ibv_close_device(struct ibv_context *ctx) { free(ctx); return 0; }
int ibv_query_device(struct ibv_context *ctx, struct ibv_device_attr *a) {
  memset(a, 0xab, sizeof *a);
  a->max_mr_size = 1ull << 40; a->max_qp = 131072; a->max_qp_wr = 32768; a->max_sge = 30; a->max_cq = 16777216;
  a->max_cqe = 4194303; a->max_qp_rd_atom = 16; a->phys_port_cnt = 1;
  return 0;
}
int ibv_query_port(struct ibv_context *ctx, uint8_t port, struct _compat_ibv_port_attr *compat) {
  struct ibv_port_attr *a = (struct ibv_port_attr *)compat;
  if (port != 1) return EINVAL;
  a->state = IBV_PORT_ACTIVE; a->max_mtu = IBV_MTU_4096; a->active_mtu = IBV_MTU_1024; a->gid_tbl_len = 256;
  a->pkey_tbl_len = 0xeeee; a->lid = 0x1234; a->sm_lid = 0xdddd; a->phys_state = 0xcc; a->link_layer = IBV_LINK_LAYER_ETHERNET;
  a->flags = 0xbb;
  return 0;
}
struct ibv_pd *ibv_alloc_pd(struct ibv_context *ctx) { struct ibv_pd *pd = calloc(1, sizeof *pd); pd->context = ctx; return pd; }
int ibv_dealloc_pd(struct ibv_pd *pd) { free(pd); return 0; }
int ibv_query_gid(struct ibv_context *c, uint8_t p, int i, union ibv_gid *g) { return -1; }
struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *a, size_t l, uint64_t v, unsigned int f) { errno = ENOSYS; return NULL; }
struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t o, size_t l, uint64_t v, int fd, int f) { errno = ENOSYS; return NULL; }
int ibv_dereg_mr(struct ibv_mr *mr) { return ENOSYS; }
struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *c) { errno = ENOSYS; return NULL; }
int ibv_destroy_comp_channel(struct ibv_comp_channel *c) { return ENOSYS; }
struct ibv_cq *ibv_create_cq(struct ibv_context *c, int n, void *x, struct ibv_comp_channel *ch, int v) { errno = ENOSYS; return NULL; }
int ibv_destroy_cq(struct ibv_cq *cq) { return ENOSYS; }
struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *a) { errno = ENOSYS; return NULL; }
int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *a, int m) { return ENOSYS; }
int ibv_destroy_qp(struct ibv_qp *qp) { return ENOSYS; }
int ibv_get_cq_event(struct ibv_comp_channel *c, struct ibv_cq **cq, void **x) { errno = ENOSYS; return -1; }
void ibv_ack_cq_events(struct ibv_cq *cq, unsigned int n) {}
const char *ibv_wc_status_str(enum ibv_wc_status s) { return "fake"; }
int ibv_fork_init(void) { return 0; }
`;

const dir = mkdtempSync(join(tmpdir(), "mooncake-ibverbs-"));
const fake = join(dir, "libibverbs-fake.so");
let fakeBuildError: string | undefined;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(() => {
  writeFileSync(join(dir, "fake.c"), FAKE_SOURCE);
  try {
    const args = ["-shared", "-fPIC", "-Wall", "-Wno-unused-parameter", "-o", fake, join(dir, "fake.c")];
    const cc = Bun.spawnSync(["cc", ...args], { stderr: "pipe" });
    if (cc.exitCode !== 0) fakeBuildError = cc.stderr.toString();
  } catch (e) {
    fakeBuildError = (e as Error).message;
  }
});

function needFake(): void {
  if (fakeBuildError !== undefined) {
    throw new Error(`cannot build the fake libibverbs; apt-get install gcc libibverbs-dev\n${fakeBuildError}`);
  }
}

/** Runs `code` (with the ffi/ibverbs.ts exports in scope as `v`) in a fresh bun, prints its JSON. */
async function inChild(code: string, env: Record<string, string>): Promise<unknown> {
  const script = `const v = await import(${JSON.stringify(MODULE)}); console.log(JSON.stringify(await (async () => { ${code} })()));`;
  const r = await run([process.execPath, "-e", script], { env });
  if (r.exitCode !== 0) throw new Error(`child exited ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe("listRdmaDevices", () => {
  test("the real libibverbs on this host: devices, or the no-device reason naming device_name", () => {
    const r = listRdmaDevices();
    if (r.ok) {
      expect(r.devices.length).toBeGreaterThan(0);
    } else {
      expect(r.reason.startsWith(NO_RDMA_DEVICE)).toBe(true);
      expect(r.reason).toContain("looked in /sys/class/infiniband via libibverbs");
      expect(r.reason).toContain("device_name");
    }
    // A host without the sysfs class (this one) must take the no-device branch.
    if (!existsSync("/sys/class/infiniband")) expect(r.ok).toBe(false);
  });

  test("a bogus MOONCAKE_LIBIBVERBS: the reason names the path and the packages", async () => {
    const r = (await inChild("return v.listRdmaDevices();", { MOONCAKE_LIBIBVERBS: BOGUS })) as { ok: boolean; reason: string };
    expect(r.ok).toBe(false);
    expect(r.reason).toContain(`tried ${BOGUS}`);
    expect(r.reason).toContain("libibverbs1 ibverbs-providers");
  });

  test("a relative MOONCAKE_LIBIBVERBS is refused", async () => {
    const r = (await inChild("return v.listRdmaDevices();", { MOONCAKE_LIBIBVERBS: "lib/libibverbs.so.1" })) as { reason: string };
    expect(r.reason).toBe("MOONCAKE_LIBIBVERBS=lib/libibverbs.so.1 must be an absolute path");
  });

  test("the fake library: names; zero devices and a NULL list both give the no-device reason", async () => {
    needFake();
    const list = (env: Record<string, string>) => inChild("return v.listRdmaDevices();", { MOONCAKE_LIBIBVERBS: fake, ...env });
    expect(await list({})).toEqual({ ok: true, devices: ["fake_0", "fake_1"] });
    expect(await list({ FAKE_IBV_DEVICES: "0" })).toEqual({
      ok: false,
      reason: NO_RDMA_DEVICE,
    });
    const failed = (await list({ FAKE_IBV_DEVICES: "fail" })) as { reason: string };
    expect(failed.reason).toBe(`${NO_RDMA_DEVICE} [ibv_get_device_list(&n) failed: ENOSYS (errno 38)]`);
  });
});

describe("wrappers against the fake library (structs written by C through verbs.h)", () => {
  test("open, query device and port, alloc and dealloc a PD, close", async () => {
    needFake();
    const out = await inChild(
      `const ctx = v.openDevice("fake_1");
       const dev = v.queryDevice(ctx);
       const port = v.queryPort(ctx, 1);
       let badPort; try { v.queryPort(ctx, 2); } catch (e) { badPort = e.message; }
       const pd = v.allocPd(ctx);
       v.deallocPd(pd);
       v.closeDevice(ctx);
       let missing; try { v.openDevice("mlx5_9"); } catch (e) { missing = e.message; }
       return { dev, port, badPort, missing };`,
      { MOONCAKE_LIBIBVERBS: fake },
    );
    expect(out).toEqual({
      dev: {
        maxMrSize: 2 ** 40,
        maxQp: 131072,
        maxQpWr: 32768,
        maxSge: 30,
        maxCq: 16777216,
        maxCqe: 4194303,
        maxQpRdAtom: 16,
        physPortCnt: 1,
      },
      port: {
        state: IBV_PORT.ACTIVE,
        maxMtu: IBV_MTU.MTU_4096,
        activeMtu: IBV_MTU.MTU_1024,
        gidTblLen: 256,
        lid: 0x1234,
        linkLayer: IBV_LINK_LAYER.ETHERNET,
      },
      badPort: "ibv_query_port(ctx, 2) failed: EINVAL (errno 22)",
      missing: 'ibv_open_device("mlx5_9") failed: ENODEV (errno 19)',
    });
  });

  test("the fake exports every bound symbol (dlopen of the whole table succeeds)", async () => {
    needFake();
    expect(await inChild("return typeof v.ibverbs().ibv_wc_status_str;", { MOONCAKE_LIBIBVERBS: fake })).toBe("function");
    expect(Object.keys(IBVERBS_SYMBOLS).length).toBe(24);
  });
});

describe("MR, CQ, channel and QP wrappers against tests/fakes/fakeverbs.c", () => {
  test("registrations, queues and QP transitions, and the errors the real rules give", async () => {
    const fabric = mkdtempSync(join(tmpdir(), "mooncake-ibverbs-fabric-"));
    try {
      const out = await inChild(
        `const abi = await import(${JSON.stringify(resolve(import.meta.dir, "ibverbs-abi.ts"))});
         const libc = await import(${JSON.stringify(resolve(import.meta.dir, "libc.ts"))});
         v.forkInit();
         const ctx = v.openDevice("fake_0");
         const pd = v.allocPd(ctx);
         const buf = new Uint8Array(1 << 20);
         const addr = libc.addressOf(buf);
         const mr = v.regMr(pd, addr, buf.length, abi.IBV_ACCESS.LOCAL_WRITE | abi.IBV_ACCESS.REMOTE_READ);
         let badAccess; try { v.regMr(pd, addr, 4096, abi.IBV_ACCESS.REMOTE_WRITE); } catch (e) { badAccess = e.message; }
         const cq = v.createCq(ctx, 64);
         const channel = v.createCompChannel(ctx);
         const qp = v.createRcQp(pd, cq.cq, { maxSendWr: 16, maxRecvWr: 1, maxSendSge: 1, maxRecvSge: 1, maxInlineData: 0 });
         let badMask; try { v.modifyQp(qp.qp, { qp_state: abi.IBV_QPS.INIT, port_num: 1 }, abi.IBV_QP.STATE | abi.IBV_QP.PORT, "INIT"); } catch (e) { badMask = e.message; }
         v.modifyQp(qp.qp, { qp_state: abi.IBV_QPS.INIT, pkey_index: 0, port_num: 1, qp_access_flags: abi.IBV_ACCESS.LOCAL_WRITE }, abi.IBV_QP.STATE | abi.IBV_QP.PKEY_INDEX | abi.IBV_QP.PORT | abi.IBV_QP.ACCESS_FLAGS, "INIT");
         const state = v.qpState(qp.qp);
         const ops = v.contextOps(ctx);
         const wc = new Uint8Array(48 * 4);
         const polled = ops.pollCq(cq.cq, 4, libc.addressOf(wc));
         let busyCq; try { v.destroyCq(cq.cq); } catch (e) { busyCq = e.message; }
         v.destroyQp(qp.qp); v.destroyCq(cq.cq); v.destroyCompChannel(channel.channel); v.deregMr(mr.mr); v.deallocPd(pd); v.closeDevice(ctx);
         return { keys: mr.lkey > 0 && mr.rkey > 0 && mr.lkey !== mr.rkey, badAccess, cqEntries: cq.entries >= 64, fd: channel.fd >= 0, qpNum: qp.qpNum >= 0x100, caps: qp.caps.maxSendWr, badMask, state, polled, busyCq, status: v.wcStatusString(10) };`,
        { MOONCAKE_LIBIBVERBS: buildFake("fakeverbs"), FAKEVERBS_FABRIC: fabric },
      );
      expect(out).toEqual({
        keys: true,
        badAccess: expect.stringContaining("ibv_reg_mr(pd, 0x") as unknown as string,
        cqEntries: true,
        fd: true,
        qpNum: true,
        caps: 16,
        badMask: "ibv_modify_qp(INIT) failed: EINVAL (errno 22)",
        state: 1,
        polled: 0,
        busyCq: "ibv_destroy_cq(cq) failed: EBUSY (errno 16)",
        status: "remote access error",
      });
      expect((out as { badAccess: string }).badAccess).toContain("EINVAL");
    } finally {
      rmSync(fabric, { recursive: true, force: true });
    }
  });
});

describe("mooncake store --protocol rdma", () => {
  const storeCommand = storeNodeCommand("127.0.0.1:1", "http://127.0.0.1:1/metadata", "1GB", "--protocol", "rdma");
  const store = (env: Record<string, string>) => run(storeCommand, { env });
  const noStack = (stderr: string) => expect(stderr).not.toMatch(/^\s+at /m);

  test("no device: exit 2 with the no-device reason, no stack trace", async () => {
    needFake();
    const r = await store({ MOONCAKE_LIBIBVERBS: fake, FAKE_IBV_DEVICES: "0" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`protocol rdma: ${NO_RDMA_DEVICE}`);
    noStack(r.stderr);
  });

  test("the real libibverbs on a host without RDMA: exit 2 with the no-device reason", async () => {
    if (existsSync("/sys/class/infiniband")) return; // a host with devices gets "not implemented" (below)
    const r = await store({});
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("no RDMA device found (looked in /sys/class/infiniband via libibverbs)");
    noStack(r.stderr);
  });

  test("no library: exit 2 naming the path tried and the packages", async () => {
    const r = await store({ MOONCAKE_LIBIBVERBS: BOGUS });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`tried ${BOGUS}`);
    expect(r.stderr).toContain("libibverbs1 ibverbs-providers");
    noStack(r.stderr);
  });

  test("device_name naming a device the host lacks: exit 2 listing the ones it has", async () => {
    needFake();
    const r = await run([...storeCommand, "--device-name", "mlx5_9"], { env: { MOONCAKE_LIBIBVERBS: fake } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("protocol rdma: device_name mlx5_9 not found; this host has fake_0, fake_1");
    noStack(r.stderr);
  });
});

describe("mooncake bench transfer --protocol rdma", () => {
  test("no RDMA device (the real libibverbs here) or no library: exit 2 with the reason, no stack trace", async () => {
    const bench = (env: Record<string, string>) =>
      run([...CLI_FROM_SOURCE, "bench", "transfer", "--mode", "target", "--protocol", "rdma"], { env });
    if (!existsSync("/sys/class/infiniband")) {
      const r = await bench({});
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain("protocol rdma: no RDMA device found");
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    const missing = await bench({ MOONCAKE_LIBIBVERBS: BOGUS });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain(`tried ${BOGUS}`);
    expect(missing.stderr).not.toMatch(/^\s+at /m);
  });
});
