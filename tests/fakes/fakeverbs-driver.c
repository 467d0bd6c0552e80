// fakeverbs-driver.c — exercises libfakeverbs.so the way a verbs application does: compiled
// against the real <infiniband/verbs.h>, so ibv_post_send / ibv_poll_cq / ibv_query_port are
// verbs.h's own inline wrappers reaching the fake through ctx->ops. Run by fakeverbs.test.ts as
// `fakeverbs-driver <scenario>`; prints "ok ..." per check, "FAIL file:line: ..." and exits 1 on
// the first failed one, "done <scenario>" at the end. Two-process scenarios fork a responder
// (the "peer") that registers memory, connects its QP to ours and serves FILL/CHECK commands
// over a pipe, so every byte is checked on the side it landed.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t peer_pid;
static unsigned long long t_wrs, t_bytes, t_errors; // what we expect fake_0's stats to say

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                  \
      printf(__VA_ARGS__);                                                                         \
      printf("\n");                                                                                \
      fflush(stdout);                                                                              \
      if (peer_pid > 0) kill(peer_pid, SIGKILL);                                                   \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)
#define OK(...) (printf("ok " __VA_ARGS__), printf("\n"), fflush(stdout))

#define MiB (1024 * 1024)
#define ALL_ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE)
#define QP_ACCESS (ALL_ACCESS | IBV_ACCESS_REMOTE_ATOMIC)

// ---------------------------------------------------------------------------------------------
// Helpers

static uint8_t pat(uint64_t i, uint32_t seed) {
  uint32_t x = (uint32_t)i * 0x9E3779B1u ^ (uint32_t)(i >> 32) ^ seed * 0x85EBCA6Bu;
  x ^= x >> 15;
  x *= 0x2C1B3C6Du;
  return (uint8_t)(x ^ (x >> 13));
}
static void fill(void *p, uint64_t len, uint32_t seed, uint64_t start) {
  for (uint64_t i = 0; i < len; i++) ((uint8_t *)p)[i] = pat(start + i, seed);
}
static int matches(const void *p, uint64_t len, uint32_t seed, uint64_t start) {
  for (uint64_t i = 0; i < len; i++)
    if (((const uint8_t *)p)[i] != pat(start + i, seed)) return 0;
  return 1;
}

static void *map_anon(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED, "mmap %zu", len);
  return p;
}

static struct ibv_context *open_dev(const char *name) {
  int n = -1;
  struct ibv_device **list = ibv_get_device_list(&n);
  CHECK(list != NULL, "ibv_get_device_list: %s", strerror(errno));
  struct ibv_context *ctx = NULL;
  for (int i = 0; i < n; i++)
    if (strcmp(ibv_get_device_name(list[i]), name) == 0) ctx = ibv_open_device(list[i]);
  ibv_free_device_list(list);
  CHECK(ctx != NULL, "open %s", name);
  return ctx;
}

struct ep {
  struct ibv_context *ctx;
  struct ibv_pd *pd;
  struct ibv_cq *cq;
  struct ibv_qp *qp;
  union ibv_gid gid; // index 1, the routable one
};

static struct ibv_qp *make_qp(struct ibv_pd *pd, struct ibv_cq *cq, uint32_t max_wr) {
  struct ibv_qp_init_attr a = {.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
                               .cap = {.max_send_wr = max_wr, .max_recv_wr = max_wr,
                                       .max_send_sge = 4, .max_recv_sge = 4, .max_inline_data = 64}};
  struct ibv_qp *qp = ibv_create_qp(pd, &a);
  CHECK(qp != NULL, "ibv_create_qp: %s", strerror(errno));
  return qp;
}

static void ep_init(struct ep *e, const char *dev, int cqe, uint32_t max_wr) {
  e->ctx = open_dev(dev);
  CHECK((e->pd = ibv_alloc_pd(e->ctx)) != NULL, "alloc_pd");
  CHECK((e->cq = ibv_create_cq(e->ctx, cqe, NULL, NULL, 0)) != NULL, "create_cq: %s", strerror(errno));
  e->qp = make_qp(e->pd, e->cq, max_wr);
  CHECK(ibv_query_gid(e->ctx, 1, 1, &e->gid) == 0, "query_gid");
}

static struct ibv_mr *reg(struct ibv_pd *pd, void *p, size_t len, int access) {
  struct ibv_mr *mr = ibv_reg_mr(pd, p, len, access);
  CHECK(mr != NULL, "ibv_reg_mr(%zu, %#x): %s", len, access, strerror(errno));
  return mr;
}

// Mooncake's transitions (spec §4.4), one step at a time.
static int to_reset(struct ibv_qp *qp) {
  struct ibv_qp_attr a = {.qp_state = IBV_QPS_RESET};
  return ibv_modify_qp(qp, &a, IBV_QP_STATE);
}
static int to_init(struct ibv_qp *qp) {
  struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1, .qp_access_flags = QP_ACCESS};
  return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}
static struct ibv_qp_attr rtr_attr(uint32_t dqpn, const union ibv_gid *dgid) {
  struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_4096, .dest_qp_num = dqpn,
                          .rq_psn = 0, .max_dest_rd_atomic = 16, .min_rnr_timer = 12};
  a.ah_attr.is_global = 1;
  a.ah_attr.grh.dgid = *dgid;
  a.ah_attr.grh.sgid_index = 1;
  a.ah_attr.grh.hop_limit = 16;
  a.ah_attr.port_num = 1;
  return a;
}
#define RTR_MASK                                                                                   \
  (IBV_QP_STATE | IBV_QP_PATH_MTU | IBV_QP_MIN_RNR_TIMER | IBV_QP_AV | IBV_QP_MAX_DEST_RD_ATOMIC | \
   IBV_QP_DEST_QPN | IBV_QP_RQ_PSN)
static int to_rtr(struct ibv_qp *qp, uint32_t dqpn, const union ibv_gid *dgid) {
  struct ibv_qp_attr a = rtr_attr(dqpn, dgid);
  return ibv_modify_qp(qp, &a, RTR_MASK);
}
#define RTS_MASK                                                                                   \
  (IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |           \
   IBV_QP_MAX_QP_RD_ATOMIC)
static struct ibv_qp_attr rts_attr(void) {
  return (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .timeout = 14, .retry_cnt = 7,
                              .rnr_retry = 7, .sq_psn = 0, .max_rd_atomic = 16};
}
static int to_rts(struct ibv_qp *qp) {
  struct ibv_qp_attr a = rts_attr();
  return ibv_modify_qp(qp, &a, RTS_MASK);
}
static void connect_qp(struct ibv_qp *qp, uint32_t dqpn, const union ibv_gid *dgid) {
  int rc;
  CHECK((rc = to_reset(qp)) == 0, "->RESET: %d", rc);
  CHECK((rc = to_init(qp)) == 0, "->INIT: %d", rc);
  CHECK((rc = to_rtr(qp, dqpn, dgid)) == 0, "->RTR: %d", rc);
  CHECK((rc = to_rts(qp)) == 0, "->RTS: %d", rc);
  CHECK(qp->state == IBV_QPS_RTS, "qp->state %d after RTS", qp->state);
}

static enum ibv_qp_state hw_state(struct ibv_qp *qp) {
  struct ibv_qp_attr a;
  struct ibv_qp_init_attr init;
  CHECK(ibv_query_qp(qp, &a, IBV_QP_STATE, &init) == 0, "query_qp");
  return a.qp_state;
}

static struct ibv_send_wr mkwr(struct ibv_sge *sge, enum ibv_wr_opcode op, void *laddr, uint32_t len,
                               uint32_t lkey, uint64_t raddr, uint32_t rkey, uint64_t wrid) {
  *sge = (struct ibv_sge){.addr = (uintptr_t)laddr, .length = len, .lkey = lkey};
  struct ibv_send_wr wr = {.wr_id = wrid, .sg_list = sge, .num_sge = 1, .opcode = op,
                           .send_flags = IBV_SEND_SIGNALED};
  wr.wr.rdma.remote_addr = raddr;
  wr.wr.rdma.rkey = rkey;
  return wr;
}

static int post(struct ibv_qp *qp, enum ibv_wr_opcode op, void *laddr, uint32_t len, uint32_t lkey,
                uint64_t raddr, uint32_t rkey, uint64_t wrid) {
  struct ibv_sge sge;
  struct ibv_send_wr wr = mkwr(&sge, op, laddr, len, lkey, raddr, rkey, wrid), *bad = NULL;
  int rc = ibv_post_send(qp, &wr, &bad);
  if (rc) CHECK(bad == &wr, "bad_wr not set on rc %d", rc);
  return rc;
}

static int poll1(struct ibv_cq *cq, struct ibv_wc *wc, int ms) {
  for (int i = 0; i < ms * 10; i++) {
    int n = ibv_poll_cq(cq, 1, wc);
    CHECK(n >= 0, "poll_cq %d", n);
    if (n == 1) return 1;
    usleep(100);
  }
  return 0;
}

static struct ibv_wc expect_wc(struct ibv_cq *cq, uint64_t wrid, enum ibv_wc_status st, const char *what) {
  struct ibv_wc wc;
  CHECK(poll1(cq, &wc, 5000), "%s: no completion", what);
  CHECK(wc.wr_id == wrid && wc.status == st, "%s: got wr_id %llu %s, want %llu %s", what,
        (unsigned long long)wc.wr_id, ibv_wc_status_str(wc.status), (unsigned long long)wrid,
        ibv_wc_status_str(st));
  if (st == IBV_WC_SUCCESS) t_wrs++, t_bytes += wc.byte_len;
  else t_errors++;
  return wc;
}

static void expect_no_wc(struct ibv_cq *cq, int ms, const char *what) {
  struct ibv_wc wc;
  CHECK(!poll1(cq, &wc, ms), "%s: unexpected completion wr_id %llu %s", what,
        (unsigned long long)wc.wr_id, ibv_wc_status_str(wc.status));
}

static void print_tally(void) { printf("tally wrs=%llu bytes=%llu errors=%llu\n", t_wrs, t_bytes, t_errors); }

static void fabric_file(const char *name, int create) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", getenv("FAKEVERBS_FABRIC"), name);
  if (create) {
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0, "create %s", path);
    close(fd);
  } else {
    unlink(path);
  }
}
static int fabric_file_exists(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", getenv("FAKEVERBS_FABRIC"), name);
  return access(path, F_OK) == 0;
}

// ---------------------------------------------------------------------------------------------
// The peer (responder) process

enum { RW_LEN = 16 * MiB, RO_LEN = 64 * 1024, DMA_FILE = 1 * MiB, DMA_OFF = 4096 + 100, DMA_LEN = 512 * 1024 };
#define DMA_IOVA 0x5a5a00000123ULL // arbitrary: peers address the dma-buf MR only by iova

struct hello {
  uint32_t qpn;
  union ibv_gid gid;
  uint64_t rw_addr, ro_addr, dma_iova;
  uint32_t rw_rkey, ro_rkey, dma_rkey;
};
enum { CMD_FILL, CMD_CHECK, CMD_DEREG_RO, CMD_DESTROY_QP, CMD_DIE, CMD_EXIT };
enum { R_RW, R_RO, R_DMA };
struct cmd {
  int op, region;
  uint64_t off, len;
  uint32_t seed;
};
struct peer {
  int rfd, wfd;
  struct hello h;
};

static void xread(int fd, void *p, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = read(fd, (char *)p + got, n - got);
    CHECK(r > 0, "pipe read: %s", r < 0 ? strerror(errno) : "EOF");
    got += (size_t)r;
  }
}
static void xwrite(int fd, const void *p, size_t n) { CHECK(write(fd, p, n) == (ssize_t)n, "pipe write"); }

static void peer_main(const char *dev, int rfd, int wfd) {
  struct ep e;
  ep_init(&e, dev, 256, 256);
  uint8_t *rw = map_anon(RW_LEN), *ro = map_anon(RO_LEN);
  struct ibv_mr *rw_mr = reg(e.pd, rw, RW_LEN, ALL_ACCESS);
  struct ibv_mr *ro_mr = reg(e.pd, ro, RO_LEN, IBV_ACCESS_REMOTE_READ);
  // The fake libcuda's shape: device memory is a memfd; the dma-buf handed to verbs is a dup of
  // it, closed once registered (Mooncake closes it after the last HCA).
  int memfd = memfd_create("fakegpu", MFD_CLOEXEC);
  CHECK(memfd >= 0 && ftruncate(memfd, DMA_FILE) == 0, "memfd");
  int dmabuf = dup(memfd);
  struct ibv_mr *dma_mr = ibv_reg_dmabuf_mr(e.pd, DMA_OFF, DMA_LEN, DMA_IOVA, dmabuf, ALL_ACCESS);
  CHECK(dma_mr != NULL, "reg_dmabuf_mr: %s", strerror(errno));
  CHECK(dma_mr->addr == (void *)(uintptr_t)DMA_IOVA && dma_mr->length == DMA_LEN, "dmabuf mr fields");
  close(dmabuf);

  struct hello theirs, mine = {.qpn = e.qp->qp_num, .gid = e.gid,
                               .rw_addr = (uintptr_t)rw, .ro_addr = (uintptr_t)ro, .dma_iova = DMA_IOVA,
                               .rw_rkey = rw_mr->rkey, .ro_rkey = ro_mr->rkey, .dma_rkey = dma_mr->rkey};
  xread(rfd, &theirs, sizeof theirs);
  connect_qp(e.qp, theirs.qpn, &theirs.gid);
  xwrite(wfd, &mine, sizeof mine);
  for (;;) {
    struct cmd c;
    xread(rfd, &c, sizeof c);
    int reply = 0;
    if (c.op == CMD_FILL || c.op == CMD_CHECK) {
      uint8_t *buf = c.region == R_DMA ? malloc(c.len) : (c.region == R_RW ? rw : ro) + c.off;
      if (c.region == R_DMA && c.op == CMD_CHECK)
        CHECK(pread(memfd, buf, c.len, DMA_OFF + (off_t)c.off) == (ssize_t)c.len, "pread");
      if (c.op == CMD_FILL) fill(buf, c.len, c.seed, 0);
      else reply = matches(buf, c.len, c.seed, 0);
      if (c.region == R_DMA && c.op == CMD_FILL)
        CHECK(pwrite(memfd, buf, c.len, DMA_OFF + (off_t)c.off) == (ssize_t)c.len, "pwrite");
      if (c.region == R_DMA) free(buf);
    } else if (c.op == CMD_DEREG_RO) {
      reply = ibv_dereg_mr(ro_mr);
    } else if (c.op == CMD_DESTROY_QP) {
      reply = ibv_destroy_qp(e.qp);
    } else if (c.op == CMD_DIE) {
      _exit(0); // no cleanup: our fabric entries stay behind with a dead owner
    } else {
      exit(0);
    }
    xwrite(wfd, &reply, sizeof reply);
  }
}

// Forks the peer on `dev`; returns once it is connected to `me` (a QP in RESET).
static struct peer start_peer(const char *dev, struct ep *me) {
  int down[2], up[2];
  CHECK(pipe(down) == 0 && pipe(up) == 0, "pipe");
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    close(down[1]), close(up[0]);
    peer_main(dev, down[0], up[1]);
    _exit(0);
  }
  close(down[0]), close(up[1]);
  peer_pid = pid;
  struct peer p = {.rfd = up[0], .wfd = down[1]};
  struct hello h = {.qpn = me->qp->qp_num, .gid = me->gid};
  xwrite(p.wfd, &h, sizeof h);
  xread(p.rfd, &p.h, sizeof p.h);
  return p;
}

static int peer_cmd(struct peer *p, int op, int region, uint64_t off, uint64_t len, uint32_t seed) {
  struct cmd c = {.op = op, .region = region, .off = off, .len = len, .seed = seed};
  int reply = 0;
  xwrite(p->wfd, &c, sizeof c);
  if (op != CMD_DIE && op != CMD_EXIT) xread(p->rfd, &reply, sizeof reply);
  return reply;
}

static void stop_peer(struct peer *p) {
  int st;
  peer_cmd(p, CMD_EXIT, 0, 0, 0, 0);
  CHECK(waitpid(peer_pid, &st, 0) == peer_pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "peer exit status %d", st);
  peer_pid = 0;
}

// The requester side most scenarios share: fake_0, a 16 MiB LOCAL_WRITE buffer, a 64 KiB one
// without LOCAL_WRITE, and a peer on fake_1.
struct side {
  struct ep e;
  uint8_t *buf, *nolw;
  struct ibv_mr *mr, *nolw_mr;
  struct peer peer;
};

static void side_init(struct side *s) {
  ep_init(&s->e, "fake_0", 4096, 256);
  s->buf = map_anon(RW_LEN);
  s->nolw = map_anon(RO_LEN);
  s->mr = reg(s->e.pd, s->buf, RW_LEN, ALL_ACCESS);
  s->nolw_mr = reg(s->e.pd, s->nolw, RO_LEN, 0);
  s->peer = start_peer("fake_1", &s->e);
  connect_qp(s->e.qp, s->peer.h.qpn, &s->peer.h.gid);
}

static void reconnect(struct side *s) { connect_qp(s->e.qp, s->peer.h.qpn, &s->peer.h.gid); }

// ---------------------------------------------------------------------------------------------
// Scenarios

static void sc_nodevice(void) {
  int n = -1;
  struct ibv_device **list = ibv_get_device_list(&n);
  CHECK(list != NULL && n == 0 && list[0] == NULL, "list %p n %d", (void *)list, n);
  ibv_free_device_list(list);
  OK("no FAKEVERBS_FABRIC: empty, non-NULL device list");
}

static void sc_query(void) {
  int n = -1;
  struct ibv_device **list = ibv_get_device_list(&n);
  CHECK(list && n == 3, "FAKEVERBS_DEVICES=3 gives %d devices", n);
  for (int i = 0; i < n; i++) {
    char want[16];
    snprintf(want, sizeof want, "fake_%d", i);
    CHECK(strcmp(ibv_get_device_name(list[i]), want) == 0, "device %d named %s", i, ibv_get_device_name(list[i]));
    struct ibv_context *ctx = ibv_open_device(list[i]);
    CHECK(ctx && ctx->device == list[i] && ctx->num_comp_vectors == 1, "open %s", want);
    struct ibv_device_attr da;
    CHECK(ibv_query_device(ctx, &da) == 0, "query_device");
    CHECK(da.max_mr_size == 1ULL << 40 && da.max_qp == 1024 && da.max_qp_wr == 1024 && da.max_sge == 4 &&
              da.max_cq == 64 && da.max_cqe == 8192 && da.max_mr == 4096 && da.max_pd == 64 &&
              da.max_qp_rd_atom == 16 && da.max_qp_init_rd_atom == 16 && da.phys_port_cnt == 1 &&
              strcmp(da.fw_ver, "fake-1") == 0,
          "device attrs");
    struct ibv_port_attr pa;
    CHECK(ibv_query_port(ctx, 1, &pa) == 0, "query_port"); // verbs.h's inline ___ibv_query_port
    CHECK(pa.state == IBV_PORT_ACTIVE && pa.max_mtu == IBV_MTU_4096 && pa.active_mtu == IBV_MTU_4096 &&
              pa.gid_tbl_len == 2 && pa.lid == 0 && pa.link_layer == IBV_LINK_LAYER_ETHERNET,
          "port attrs: state %d mtu %d/%d gids %d lid %d ll %d", pa.state, pa.max_mtu, pa.active_mtu,
          pa.gid_tbl_len, pa.lid, pa.link_layer);
    CHECK(ibv_query_port(ctx, 2, &pa) == EINVAL, "query_port(2)");
    int ep = epoll_create1(EPOLL_CLOEXEC); // Mooncake epolls async_fd (spec §4.2 step 6)
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    CHECK(ep >= 0 && fcntl(ctx->async_fd, F_SETFL, O_NONBLOCK) == 0 && epoll_ctl(ep, EPOLL_CTL_ADD, ctx->async_fd, &ev) == 0 &&
              epoll_wait(ep, &ev, 1, 0) == 0,
          "async_fd is pollable and quiet");
    close(ep);
    union ibv_gid g0, g1, want0 = {.raw = {0xfe, 0x80}}, want1 = {.raw = {[10] = 0xff, 0xff, 127, 0, (uint8_t)i, 1}};
    want0.raw[15] = (uint8_t)(i + 1);
    CHECK(ibv_query_gid(ctx, 1, 0, &g0) == 0 && memcmp(&g0, &want0, 16) == 0, "gid 0 of %s", want);
    CHECK(ibv_query_gid(ctx, 1, 1, &g1) == 0 && memcmp(&g1, &want1, 16) == 0, "gid 1 of %s", want);
    errno = 0;
    CHECK(ibv_query_gid(ctx, 1, 2, &g0) == -1 && errno == EINVAL, "gid index 2");
    errno = 0;
    CHECK(ibv_query_gid(ctx, 2, 0, &g0) == -1 && errno == EINVAL, "gid on port 2");
    CHECK(ibv_close_device(ctx) == 0, "close");
  }
  ibv_free_device_list(list);
  OK("3 devices, device/port/gid attributes");
  CHECK(strcmp(ibv_wc_status_str(IBV_WC_SUCCESS), "success") == 0 &&
            strcmp(ibv_wc_status_str(IBV_WC_REM_ACCESS_ERR), "remote access error") == 0 &&
            strcmp(ibv_wc_status_str(IBV_WC_RETRY_EXC_ERR), "transport retry counter exceeded") == 0 &&
            strcmp(ibv_wc_status_str(IBV_WC_WR_FLUSH_ERR), "Work Request Flushed Error") == 0 &&
            strcmp(ibv_wc_status_str(IBV_WC_LOC_PROT_ERR), "local protection error") == 0 &&
            strcmp(ibv_wc_status_str(99), "unknown") == 0,
        "wc status strings");
  OK("ibv_wc_status_str");
  CHECK(ibv_fork_init() == 0, "fork_init");
}

static void sc_objects(void) {
  struct ep e;
  ep_init(&e, "fake_0", 64, 256);
  // MRs
  size_t len = 1 * MiB;
  uint8_t *buf = map_anon(len);
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, buf, len, IBV_ACCESS_REMOTE_WRITE) && errno == EINVAL, "REMOTE_WRITE without LOCAL_WRITE");
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, buf, len, IBV_ACCESS_REMOTE_ATOMIC) && errno == EINVAL, "REMOTE_ATOMIC without LOCAL_WRITE");
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, buf, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ZERO_BASED) && errno == EINVAL, "unknown bit");
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, NULL, len, 0) && errno == EINVAL, "NULL addr");
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, buf, 0, 0) && errno == EINVAL, "length 0");
  uint8_t *gone = map_anon(2 * 4096);
  munmap(gone + 4096, 4096);
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, gone, 2 * 4096, 0) && errno == EFAULT, "partly unmapped range: %s", strerror(errno));
  uint8_t *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, none, 4096, 0) && errno == EFAULT, "PROT_NONE range");
  uint8_t *rdonly = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = 0;
  CHECK(!ibv_reg_mr(e.pd, rdonly, 4096, IBV_ACCESS_LOCAL_WRITE) && errno == EFAULT, "read-only range, writable MR");
  struct ibv_mr *ro = reg(e.pd, rdonly, 4096, IBV_ACCESS_REMOTE_READ);
  OK("reg_mr rejects bad access, NULL, 0, unmapped, PROT_NONE, read-only-but-writable");
  // The optional range goes to ibv_reg_mr_iova2 (the verbs.h macro does that for non-constant
  // access); RELAXED_ORDERING is accepted and ignored.
  unsigned relaxed = ALL_ACCESS | IBV_ACCESS_RELAXED_ORDERING;
  struct ibv_mr *mrs[100];
  mrs[0] = ibv_reg_mr_iova2(e.pd, buf, len, (uintptr_t)buf, relaxed);
  CHECK(mrs[0] && mrs[0]->addr == buf && mrs[0]->length == len && mrs[0]->pd == e.pd &&
            mrs[0]->context == e.ctx && mrs[0]->lkey && mrs[0]->rkey,
        "mr fields");
  for (int i = 1; i < 100; i++) mrs[i] = reg(e.pd, buf + i, 100, ALL_ACCESS);
  for (int i = 0; i < 100; i++)
    for (int j = 0; j < 100; j++) {
      CHECK(mrs[i]->lkey != mrs[j]->rkey, "lkey %d == rkey %d", i, j);
      if (i != j) CHECK(mrs[i]->lkey != mrs[j]->lkey && mrs[i]->rkey != mrs[j]->rkey, "keys %d %d collide", i, j);
    }
  OK("100 MRs: non-zero keys, all distinct");
  // PD / CQ busy rules
  CHECK(ibv_dealloc_pd(e.pd) == EBUSY, "dealloc_pd with MRs and a QP");
  CHECK(ibv_destroy_cq(e.cq) == EBUSY, "destroy_cq with a QP");
  for (int i = 0; i < 100; i++) CHECK(ibv_dereg_mr(mrs[i]) == 0, "dereg");
  CHECK(ibv_dereg_mr(ro) == 0, "dereg ro");
  CHECK(ibv_dealloc_pd(e.pd) == EBUSY, "dealloc_pd with a QP");
  OK("dealloc_pd / destroy_cq in use: EBUSY");
  // CQs
  errno = 0;
  CHECK(!ibv_create_cq(e.ctx, 0, NULL, NULL, 0) && errno == EINVAL, "cqe 0");
  errno = 0;
  CHECK(!ibv_create_cq(e.ctx, 8193, NULL, NULL, 0) && errno == EINVAL, "cqe 8193");
  struct ibv_cq *big = ibv_create_cq(e.ctx, 8192, (void *)0x1234, NULL, 0);
  CHECK(big && big->cqe >= 8192 && big->cq_context == (void *)0x1234 && big->context == e.ctx, "cqe 8192");
  CHECK(ibv_destroy_cq(big) == 0, "destroy_cq");
  OK("create_cq limits");
  // QPs
  struct ibv_qp_init_attr a = {.send_cq = e.cq, .recv_cq = e.cq, .qp_type = IBV_QPT_RC,
                               .cap = {.max_send_wr = 256, .max_recv_wr = 256, .max_send_sge = 4,
                                       .max_recv_sge = 4, .max_inline_data = 64}};
  struct ibv_qp_init_attr b;
  b = a, b.qp_type = IBV_QPT_UD, errno = 0;
  CHECK(!ibv_create_qp(e.pd, &b) && errno == EINVAL, "UD");
  b = a, b.send_cq = NULL, errno = 0;
  CHECK(!ibv_create_qp(e.pd, &b) && errno == EINVAL, "no send_cq");
  b = a, b.cap.max_send_wr = 1025, errno = 0;
  CHECK(!ibv_create_qp(e.pd, &b) && errno == EINVAL, "max_send_wr 1025");
  b = a, b.cap.max_send_sge = 5, errno = 0;
  CHECK(!ibv_create_qp(e.pd, &b) && errno == EINVAL, "max_send_sge 5");
  b = a, b.cap.max_inline_data = 65, errno = 0;
  CHECK(!ibv_create_qp(e.pd, &b) && errno == EINVAL, "max_inline_data 65");
  b = a, b.qp_context = (void *)0x77;
  struct ibv_qp *qp = ibv_create_qp(e.pd, &b);
  CHECK(qp && qp->qp_num >= 0x100 && qp->qp_num != e.qp->qp_num && qp->state == IBV_QPS_RESET &&
            qp->qp_type == IBV_QPT_RC && qp->qp_context == (void *)0x77 && qp->pd == e.pd &&
            qp->send_cq == e.cq && qp->context == e.ctx,
        "qp fields");
  CHECK(b.cap.max_send_wr == 256 && b.cap.max_send_sge == 4 && b.cap.max_inline_data == 64, "cap written back");
  CHECK(ibv_destroy_qp(qp) == 0 && ibv_destroy_qp(e.qp) == 0, "destroy_qp");
  CHECK(ibv_destroy_cq(e.cq) == 0 && ibv_dealloc_pd(e.pd) == 0, "teardown");
  OK("create_qp rules and fields");
  // Completion channel
  struct ibv_comp_channel *ch = ibv_create_comp_channel(e.ctx);
  CHECK(ch && ch->fd >= 0, "create_comp_channel");
  struct ibv_cq *cq = ibv_create_cq(e.ctx, 16, NULL, ch, 0);
  CHECK(cq && cq->channel == ch, "cq on channel");
  CHECK(ibv_destroy_comp_channel(ch) == EBUSY, "destroy busy channel");
  CHECK(ibv_destroy_cq(cq) == 0 && ibv_destroy_comp_channel(ch) == 0, "channel teardown");
  CHECK(ibv_close_device(e.ctx) == 0, "close");
  OK("comp channel busy rule");
}

static void sc_modify(void) {
  struct ep e;
  ep_init(&e, "fake_0", 64, 256);
  struct ibv_qp *qp = e.qp;
  struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = 1, .qp_access_flags = QP_ACCESS};
  int init_mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
  CHECK(ibv_modify_qp(qp, &a, init_mask & ~IBV_QP_PORT) == EINVAL, "RESET->INIT without PORT");
  CHECK(ibv_modify_qp(qp, &a, init_mask & ~IBV_QP_ACCESS_FLAGS) == EINVAL, "RESET->INIT without ACCESS_FLAGS");
  CHECK(ibv_modify_qp(qp, &a, init_mask & ~IBV_QP_PKEY_INDEX) == EINVAL, "RESET->INIT without PKEY_INDEX");
  CHECK(ibv_modify_qp(qp, &a, init_mask | IBV_QP_AV) == EINVAL, "RESET->INIT with AV");
  a.port_num = 2;
  CHECK(ibv_modify_qp(qp, &a, init_mask) == EINVAL, "port 2");
  a.port_num = 1, a.pkey_index = 1;
  CHECK(ibv_modify_qp(qp, &a, init_mask) == EINVAL, "pkey_index 1");
  CHECK(qp->state == IBV_QPS_RESET, "still RESET");
  struct ibv_qp_attr rts = rts_attr();
  CHECK(ibv_modify_qp(qp, &rts, RTS_MASK) == EINVAL, "RESET->RTS");
  struct ibv_qp_attr rtr = rtr_attr(qp->qp_num, &e.gid);
  CHECK(ibv_modify_qp(qp, &rtr, RTR_MASK) == EINVAL, "RESET->RTR");
  OK("RESET->INIT mask rules, RESET->RTS and RESET->RTR: EINVAL");
  CHECK(to_init(qp) == 0 && qp->state == IBV_QPS_INIT, "RESET->INIT");
  struct ibv_qp_attr p = {.port_num = 1};
  CHECK(ibv_modify_qp(qp, &p, IBV_QP_PORT) == 0, "INIT->INIT (PORT)");
  CHECK(ibv_modify_qp(qp, &rtr, RTR_MASK & ~IBV_QP_DEST_QPN) == EINVAL, "RTR without DEST_QPN");
  CHECK(ibv_modify_qp(qp, &rtr, RTR_MASK | IBV_QP_SQ_PSN) == EINVAL, "RTR with SQ_PSN");
  struct ibv_qp_attr bad = rtr;
  bad.ah_attr.is_global = 0;
  CHECK(ibv_modify_qp(qp, &bad, RTR_MASK) == EINVAL, "RTR without GRH");
  bad = rtr, bad.ah_attr.grh.sgid_index = 2;
  CHECK(ibv_modify_qp(qp, &bad, RTR_MASK) == EINVAL, "sgid_index 2");
  bad = rtr, bad.ah_attr.port_num = 2;
  CHECK(ibv_modify_qp(qp, &bad, RTR_MASK) == EINVAL, "ah port 2");
  bad = rtr, bad.path_mtu = IBV_MTU_4096 + 1;
  CHECK(ibv_modify_qp(qp, &bad, RTR_MASK) == EINVAL, "path_mtu above active_mtu");
  CHECK(qp->state == IBV_QPS_INIT, "still INIT");
  CHECK(to_rtr(qp, qp->qp_num, &e.gid) == 0 && qp->state == IBV_QPS_RTR, "INIT->RTR");
  OK("INIT->RTR mask and value rules");
  CHECK(ibv_modify_qp(qp, &rts, RTS_MASK & ~IBV_QP_SQ_PSN) == EINVAL, "RTS without SQ_PSN");
  CHECK(ibv_modify_qp(qp, &rts, RTS_MASK | IBV_QP_DEST_QPN) == EINVAL, "RTS with DEST_QPN");
  CHECK(to_rts(qp) == 0 && qp->state == IBV_QPS_RTS, "RTR->RTS");
  CHECK(ibv_modify_qp(qp, &a, IBV_QP_ACCESS_FLAGS) == 0, "RTS->RTS (ACCESS_FLAGS)");
  CHECK(ibv_modify_qp(qp, &rts, IBV_QP_TIMEOUT) == EINVAL, "RTS->RTS (TIMEOUT)");
  CHECK(to_init(qp) == EINVAL, "RTS->INIT");
  struct ibv_qp_attr err = {.qp_state = IBV_QPS_ERR};
  CHECK(ibv_modify_qp(qp, &err, IBV_QP_STATE | IBV_QP_PORT) == EINVAL, "->ERR with PORT");
  CHECK(ibv_modify_qp(qp, &err, IBV_QP_STATE) == 0 && qp->state == IBV_QPS_ERR && hw_state(qp) == IBV_QPS_ERR, "->ERR");
  CHECK(to_reset(qp) == 0 && qp->state == IBV_QPS_RESET, "ERR->RESET");
  CHECK(to_reset(qp) == 0, "RESET->RESET");
  OK("RTR->RTS, RTS->RTS, ->ERR, ->RESET rules");
  connect_qp(qp, qp->qp_num, &e.gid);
  struct ibv_qp_attr q;
  struct ibv_qp_init_attr qi;
  CHECK(ibv_query_qp(qp, &q, IBV_QP_STATE, &qi) == 0 && q.qp_state == IBV_QPS_RTS && q.dest_qp_num == qp->qp_num &&
            q.qp_access_flags == QP_ACCESS && q.cap.max_send_wr == 256,
        "query_qp");
  OK("query_qp after a full connect");
}

// Single-SGE WRITE then READ of `size` bytes at odd offsets, checked on both sides.
static void rw_roundtrip(struct side *s, uint64_t size, uint32_t seed) {
  static uint64_t wrid = 1000;
  fill(s->buf, size, seed, 0);
  CHECK(post(s->e.qp, IBV_WR_RDMA_WRITE, s->buf, (uint32_t)size, s->mr->lkey, s->peer.h.rw_addr + 4096 + 7,
             s->peer.h.rw_rkey, ++wrid) == 0, "post WRITE");
  struct ibv_wc wc = expect_wc(s->e.cq, wrid, IBV_WC_SUCCESS, "WRITE");
  CHECK(wc.opcode == IBV_WC_RDMA_WRITE && wc.byte_len == size && wc.qp_num == s->e.qp->qp_num && wc.vendor_err == 0,
        "WRITE wc: opcode %d byte_len %u qp %u", wc.opcode, wc.byte_len, wc.qp_num);
  CHECK(peer_cmd(&s->peer, CMD_CHECK, R_RW, 4096 + 7, size, seed), "peer memory after WRITE of %llu", (unsigned long long)size);
  peer_cmd(&s->peer, CMD_FILL, R_RW, 7 * MiB + 13, size, seed + 1);
  memset(s->buf + 1, 0, size);
  CHECK(post(s->e.qp, IBV_WR_RDMA_READ, s->buf + 1, (uint32_t)size, s->mr->lkey, s->peer.h.rw_addr + 7 * MiB + 13,
             s->peer.h.rw_rkey, ++wrid) == 0, "post READ");
  wc = expect_wc(s->e.cq, wrid, IBV_WC_SUCCESS, "READ");
  CHECK(wc.opcode == IBV_WC_RDMA_READ && wc.byte_len == size, "READ wc");
  CHECK(matches(s->buf + 1, size, seed + 1, 0), "local memory after READ of %llu", (unsigned long long)size);
  OK("WRITE + READ %llu bytes, byte for byte", (unsigned long long)size);
}

static void sc_transfer(void) {
  struct side s;
  side_init(&s);
  rw_roundtrip(&s, 1, 11);
  rw_roundtrip(&s, 64 * 1024, 22);
  rw_roundtrip(&s, 8 * MiB, 33);
  // Gather from four scattered local pieces into one remote range, then scatter a READ back.
  static const uint32_t lens[4] = {100, 4096, 1, 60000};
  static const uint64_t offs[4] = {0, 100000, 300001, 500000};
  struct ibv_sge sg[4];
  uint64_t total = 0;
  for (int i = 0; i < 4; i++) {
    fill(s.buf + offs[i], lens[i], 44, total);
    sg[i] = (struct ibv_sge){.addr = (uintptr_t)(s.buf + offs[i]), .length = lens[i], .lkey = s.mr->lkey};
    total += lens[i];
  }
  struct ibv_send_wr wr = {.wr_id = 7, .sg_list = sg, .num_sge = 4, .opcode = IBV_WR_RDMA_WRITE,
                           .send_flags = IBV_SEND_SIGNALED}, *bad;
  wr.wr.rdma.remote_addr = s.peer.h.rw_addr + 3;
  wr.wr.rdma.rkey = s.peer.h.rw_rkey;
  CHECK(ibv_post_send(s.e.qp, &wr, &bad) == 0, "post 4-SGE WRITE");
  CHECK(expect_wc(s.e.cq, 7, IBV_WC_SUCCESS, "4-SGE WRITE").byte_len == total, "byte_len of 4 SGEs");
  CHECK(peer_cmd(&s.peer, CMD_CHECK, R_RW, 3, total, 44), "gathered bytes");
  peer_cmd(&s.peer, CMD_FILL, R_RW, 3, total, 45);
  for (int i = 0; i < 4; i++) memset(s.buf + offs[i], 0, lens[i]);
  wr.opcode = IBV_WR_RDMA_READ, wr.wr_id = 8;
  CHECK(ibv_post_send(s.e.qp, &wr, &bad) == 0, "post 4-SGE READ");
  expect_wc(s.e.cq, 8, IBV_WC_SUCCESS, "4-SGE READ");
  for (uint64_t i = 0, at = 0; i < 4; at += lens[i], i++)
    CHECK(matches(s.buf + offs[i], lens[i], 45, at), "scattered piece %llu", (unsigned long long)i);
  OK("4-SGE gather WRITE and scatter READ");
  // A chain of three unsignaled WRITEs and a signaled one: one completion, all four executed.
  struct ibv_sge c_sge[4];
  struct ibv_send_wr chain[4];
  for (int i = 0; i < 4; i++) {
    fill(s.buf + i * 1000, 1000, 50 + (uint32_t)i, 0);
    chain[i] = mkwr(&c_sge[i], IBV_WR_RDMA_WRITE, s.buf + i * 1000, 1000, s.mr->lkey,
                    s.peer.h.rw_addr + 12 * MiB + (uint64_t)i * 1000, s.peer.h.rw_rkey, 60 + (uint64_t)i);
    chain[i].send_flags = i == 3 ? IBV_SEND_SIGNALED : 0;
    chain[i].next = i < 3 ? &chain[i + 1] : NULL;
  }
  CHECK(ibv_post_send(s.e.qp, chain, &bad) == 0, "post chain");
  expect_wc(s.e.cq, 63, IBV_WC_SUCCESS, "signaled tail of the chain");
  t_wrs += 3, t_bytes += 3000; // the unsignaled ones
  expect_no_wc(s.e.cq, 20, "unsignaled WRs");
  for (int i = 0; i < 4; i++) CHECK(peer_cmd(&s.peer, CMD_CHECK, R_RW, 12 * MiB + (uint64_t)i * 1000, 1000, 50 + (uint32_t)i), "chain WR %d", i);
  OK("unsignaled chain: one completion, every WR executed in order");
  // Loopback: a second QP on fake_0 connected to itself moves bytes with memcpy.
  struct ibv_qp *lo = make_qp(s.e.pd, s.e.cq, 16);
  connect_qp(lo, lo->qp_num, &s.e.gid);
  fill(s.buf, 65536, 70, 0);
  CHECK(post(lo, IBV_WR_RDMA_WRITE, s.buf, 65536, s.mr->lkey, (uintptr_t)(s.buf + 4 * MiB), s.mr->rkey, 71) == 0, "loopback WRITE");
  expect_wc(s.e.cq, 71, IBV_WC_SUCCESS, "loopback WRITE");
  CHECK(matches(s.buf + 4 * MiB, 65536, 70, 0), "loopback WRITE bytes");
  CHECK(post(lo, IBV_WR_RDMA_READ, s.buf + 6 * MiB, 65536, s.mr->lkey, (uintptr_t)(s.buf + 4 * MiB), s.mr->rkey, 72) == 0, "loopback READ");
  expect_wc(s.e.cq, 72, IBV_WC_SUCCESS, "loopback READ");
  CHECK(matches(s.buf + 6 * MiB, 65536, 70, 0), "loopback READ bytes");
  OK("loopback QP (same process) WRITE + READ");
  CHECK(ibv_destroy_qp(lo) == 0, "destroy loopback");
  stop_peer(&s.peer);
  print_tally();
}

static void sc_errors(void) {
  struct side s;
  side_init(&s);
  struct peer *p = &s.peer;
  // Out of bounds: the last 10 bytes of the remote MR plus 54 past it.
  peer_cmd(p, CMD_FILL, R_RW, RW_LEN - 10, 10, 1);
  peer_cmd(p, CMD_FILL, R_RW, 0, 4096, 2);
  fill(s.buf, 64, 3, 0);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr + RW_LEN - 10, p->h.rw_rkey, 1) == 0, "post OOB");
  expect_wc(s.e.cq, 1, IBV_WC_REM_ACCESS_ERR, "out-of-bounds WRITE");
  CHECK(hw_state(s.e.qp) == IBV_QPS_ERR, "QP in ERR after a remote access error");
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 2) == 0, "post on ERR QP accepted");
  CHECK(post(s.e.qp, IBV_WR_RDMA_READ, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 3) == 0, "post on ERR QP accepted");
  expect_wc(s.e.cq, 2, IBV_WC_WR_FLUSH_ERR, "WRITE after ERR");
  expect_wc(s.e.cq, 3, IBV_WC_WR_FLUSH_ERR, "READ after ERR");
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, RW_LEN - 10, 10, 1) && peer_cmd(p, CMD_CHECK, R_RW, 0, 4096, 2), "no byte moved");
  OK("out-of-bounds remote address: REM_ACCESS_ERR, QP in ERR, later WRs WR_FLUSH_ERR, no byte moved");
  reconnect(&s);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey + (2u << 12), 4) == 0, "post");
  expect_wc(s.e.cq, 4, IBV_WC_REM_ACCESS_ERR, "wrong rkey");
  reconnect(&s);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, s.mr->rkey, 5) == 0, "post");
  expect_wc(s.e.cq, 5, IBV_WC_REM_ACCESS_ERR, "another process's rkey");
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, 0, 4096, 2), "no byte moved");
  OK("wrong rkey: REM_ACCESS_ERR");
  reconnect(&s);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.ro_addr, p->h.ro_rkey, 6) == 0, "post");
  expect_wc(s.e.cq, 6, IBV_WC_REM_ACCESS_ERR, "WRITE into a REMOTE_READ-only MR");
  reconnect(&s);
  peer_cmd(p, CMD_FILL, R_RO, 0, 64, 7);
  CHECK(post(s.e.qp, IBV_WR_RDMA_READ, s.buf, 64, s.mr->lkey, p->h.ro_addr, p->h.ro_rkey, 7) == 0, "post");
  expect_wc(s.e.cq, 7, IBV_WC_SUCCESS, "READ from a REMOTE_READ-only MR");
  CHECK(matches(s.buf, 64, 7, 0), "READ bytes");
  OK("remote access flags: WRITE to read-only MR REM_ACCESS_ERR, READ ok");
  memset(s.nolw, 0xab, 64);
  CHECK(post(s.e.qp, IBV_WR_RDMA_READ, s.nolw, 64, s.nolw_mr->lkey, p->h.rw_addr, p->h.rw_rkey, 8) == 0, "post");
  expect_wc(s.e.cq, 8, IBV_WC_LOC_PROT_ERR, "READ into an MR without LOCAL_WRITE");
  for (int i = 0; i < 64; i++) CHECK(s.nolw[i] == 0xab, "local byte %d changed", i);
  reconnect(&s);
  fill(s.nolw, 64, 9, 0);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.nolw, 64, s.nolw_mr->lkey, p->h.rw_addr, p->h.rw_rkey, 9) == 0, "post");
  expect_wc(s.e.cq, 9, IBV_WC_SUCCESS, "WRITE from an MR without LOCAL_WRITE");
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, 0, 64, 9), "bytes");
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey ^ (4u << 12), p->h.rw_addr, p->h.rw_rkey, 10) == 0, "post");
  expect_wc(s.e.cq, 10, IBV_WC_LOC_PROT_ERR, "bad lkey");
  reconnect(&s);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf + RW_LEN - 10, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 11) == 0, "post");
  expect_wc(s.e.cq, 11, IBV_WC_LOC_PROT_ERR, "local SGE past its MR");
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, 0, 64, 9), "no byte moved");
  OK("local protection: READ into no-LOCAL_WRITE MR, bad lkey, SGE out of MR: LOC_PROT_ERR");
  reconnect(&s);
  CHECK(peer_cmd(p, CMD_DEREG_RO, 0, 0, 0, 0) == 0, "peer dereg");
  CHECK(post(s.e.qp, IBV_WR_RDMA_READ, s.buf, 64, s.mr->lkey, p->h.ro_addr, p->h.ro_rkey, 12) == 0, "post");
  expect_wc(s.e.cq, 12, IBV_WC_REM_ACCESS_ERR, "READ with a deregistered rkey");
  reconnect(&s);
  CHECK(peer_cmd(p, CMD_DESTROY_QP, 0, 0, 0, 0) == 0, "peer destroy_qp");
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 13) == 0, "post");
  expect_wc(s.e.cq, 13, IBV_WC_RETRY_EXC_ERR, "WRITE to a destroyed QP");
  OK("deregistered remote MR: REM_ACCESS_ERR; destroyed remote QP: RETRY_EXC_ERR");
  stop_peer(p);
  print_tally();
}

static void sc_posting(void) {
  struct ep e;
  ep_init(&e, "fake_0", 256, 4); // max_send_wr 4
  uint8_t *buf = map_anon(1 * MiB);
  struct ibv_mr *mr = reg(e.pd, buf, 1 * MiB, ALL_ACCESS);
  uint64_t dst = (uintptr_t)(buf + 512 * 1024);
#define POST(qp, id) post(qp, IBV_WR_RDMA_WRITE, buf, 64, mr->lkey, dst, mr->rkey, id)
  CHECK(POST(e.qp, 1) == EINVAL, "post on RESET");
  CHECK(to_init(e.qp) == 0 && POST(e.qp, 1) == EINVAL, "post on INIT");
  CHECK(to_rtr(e.qp, e.qp->qp_num, &e.gid) == 0 && POST(e.qp, 1) == EINVAL, "post on RTR");
  struct ibv_recv_wr rwr = {.wr_id = 1}, *rbad;
  CHECK(ibv_post_recv(e.qp, &rwr, &rbad) == 0, "post_recv on RTR (accepted, never completes)");
  CHECK(to_rts(e.qp) == 0 && POST(e.qp, 1) == 0, "post on RTS");
  expect_wc(e.cq, 1, IBV_WC_SUCCESS, "first WR");
  OK("post_send on RESET / INIT / RTR: EINVAL with bad_wr");
  CHECK(post(e.qp, IBV_WR_SEND, buf, 64, mr->lkey, dst, mr->rkey, 2) == EINVAL, "SEND opcode");
  struct ibv_sge sg[5] = {{(uintptr_t)buf, 8, mr->lkey}, {(uintptr_t)buf, 8, mr->lkey}, {(uintptr_t)buf, 8, mr->lkey},
                          {(uintptr_t)buf, 8, mr->lkey}, {(uintptr_t)buf, 8, mr->lkey}};
  struct ibv_send_wr w = {.wr_id = 3, .sg_list = sg, .num_sge = 0, .opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_SIGNALED}, *bad;
  w.wr.rdma.remote_addr = dst, w.wr.rdma.rkey = mr->rkey;
  CHECK(ibv_post_send(e.qp, &w, &bad) == EINVAL && bad == &w, "num_sge 0");
  w.num_sge = 5;
  CHECK(ibv_post_send(e.qp, &w, &bad) == EINVAL && bad == &w, "num_sge 5 > max_send_sge 4");
  struct ibv_sge s3[3];
  struct ibv_send_wr c[3];
  for (int i = 0; i < 3; i++) {
    c[i] = mkwr(&s3[i], IBV_WR_RDMA_WRITE, buf, 64, mr->lkey, dst, mr->rkey, 10 + (uint64_t)i);
    c[i].next = i < 2 ? &c[i + 1] : NULL;
  }
  c[1].opcode = IBV_WR_SEND;
  CHECK(ibv_post_send(e.qp, c, &bad) == EINVAL && bad == &c[1], "chain with a bad middle WR");
  expect_wc(e.cq, 10, IBV_WC_SUCCESS, "the WR before bad_wr ran");
  expect_no_wc(e.cq, 20, "nothing after bad_wr");
  CHECK(hw_state(e.qp) == IBV_QPS_RTS, "a rejected post leaves the QP in RTS");
  OK("bad opcode / num_sge: EINVAL with bad_wr at the offending WR");
  for (int i = 0; i < 4; i++) CHECK(POST(e.qp, 20 + (uint64_t)i) == 0, "post %d of 4", i);
  CHECK(POST(e.qp, 24) == ENOMEM, "5th outstanding WR");
  expect_wc(e.cq, 20, IBV_WC_SUCCESS, "poll one");
  CHECK(POST(e.qp, 25) == 0, "a slot freed by polling");
  for (int i = 21; i <= 23; i++) expect_wc(e.cq, (uint64_t)i, IBV_WC_SUCCESS, "drain");
  expect_wc(e.cq, 25, IBV_WC_SUCCESS, "drain");
  struct ibv_sge s6[6];
  struct ibv_send_wr c6[6];
  for (int i = 0; i < 6; i++) {
    c6[i] = mkwr(&s6[i], IBV_WR_RDMA_WRITE, buf, 64, mr->lkey, dst, mr->rkey, 30 + (uint64_t)i);
    c6[i].next = i < 5 ? &c6[i + 1] : NULL;
    c6[i].send_flags = i == 3 ? IBV_SEND_SIGNALED : 0; // 3 unsignaled, then a signaled one
  }
  CHECK(ibv_post_send(e.qp, c6, &bad) == ENOMEM && bad == &c6[4], "chain of 6 on a 4-deep SQ");
  t_wrs += 3, t_bytes += 192;
  expect_wc(e.cq, 33, IBV_WC_SUCCESS, "signaled WR frees the unsignaled ones before it");
  for (int i = 0; i < 4; i++) CHECK(POST(e.qp, 40 + (uint64_t)i) == 0, "SQ empty again: post %d", i);
  for (int i = 0; i < 4; i++) expect_wc(e.cq, 40 + (uint64_t)i, IBV_WC_SUCCESS, "drain");
  OK("max_send_wr: ENOMEM past 4 outstanding; slots freed by polling (unsignaled with the next signaled)");
  struct ibv_cq *small = ibv_create_cq(e.ctx, 2, NULL, NULL, 0);
  struct ibv_qp *qp2 = make_qp(e.pd, small, 8);
  connect_qp(qp2, qp2->qp_num, &e.gid);
  CHECK(POST(qp2, 50) == 0 && POST(qp2, 51) == 0, "fill a 2-entry CQ");
  CHECK(POST(qp2, 52) == ENOMEM, "3rd completion would overflow the CQ");
  expect_wc(small, 50, IBV_WC_SUCCESS, "poll");
  CHECK(POST(qp2, 53) == 0, "room again");
  expect_wc(small, 51, IBV_WC_SUCCESS, "drain");
  expect_wc(small, 53, IBV_WC_SUCCESS, "drain");
  OK("CQ overflow: post_send ENOMEM");
  struct ibv_qp *qp3 = make_qp(e.pd, e.cq, 8);
  CHECK(ibv_post_recv(qp3, &rwr, &rbad) == EINVAL && rbad == &rwr, "post_recv on RESET");
  // Reset drops queued completions and the send queue.
  CHECK(POST(e.qp, 60) == 0 && POST(e.qp, 61) == 0, "two WRs");
  CHECK(to_reset(e.qp) == 0, "reset");
  expect_no_wc(e.cq, 20, "completions of a reset QP");
  connect_qp(e.qp, e.qp->qp_num, &e.gid);
  for (int i = 0; i < 4; i++) CHECK(POST(e.qp, 70 + (uint64_t)i) == 0, "after reset: post %d", i);
  for (int i = 0; i < 4; i++) expect_wc(e.cq, 70 + (uint64_t)i, IBV_WC_SUCCESS, "drain");
  OK("RESET clears the send queue and its completions");
  t_wrs += 2, t_bytes += 128; // the two executed before the reset
  print_tally();
}

static void sc_faults(void) {
  struct side s;
  side_init(&s);
  struct peer *p = &s.peer;
  struct ibv_port_attr pa;
  peer_cmd(p, CMD_FILL, R_RW, 0, 4096, 1);
  fill(s.buf, 4096, 2, 0);
  fabric_file("link_down.fake_0", 1);
  CHECK(ibv_query_port(s.e.ctx, 1, &pa) == 0 && pa.state == IBV_PORT_DOWN, "port DOWN");
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 1) == 0, "post");
  expect_wc(s.e.cq, 1, IBV_WC_RETRY_EXC_ERR, "local link down");
  CHECK(hw_state(s.e.qp) == IBV_QPS_ERR, "QP in ERR");
  fabric_file("link_down.fake_0", 0);
  CHECK(ibv_query_port(s.e.ctx, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE, "port ACTIVE again");
  reconnect(&s);
  fabric_file("link_down.fake_1", 1);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 2) == 0, "post");
  expect_wc(s.e.cq, 2, IBV_WC_RETRY_EXC_ERR, "remote link down");
  fabric_file("link_down.fake_1", 0);
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, 0, 4096, 1), "no byte moved");
  reconnect(&s);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 3) == 0, "post");
  expect_wc(s.e.cq, 3, IBV_WC_SUCCESS, "link back up");
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, 0, 64, 2), "bytes");
  OK("link_down.<dev> file, local or remote: port DOWN, RETRY_EXC_ERR, QP in ERR; removing it restores the link");
  peer_cmd(p, CMD_FILL, R_RW, 0, 4096, 1);
  fabric_file("qp_error", 1);
  struct ibv_sge sg[2];
  struct ibv_send_wr w[2], *bad;
  w[0] = mkwr(&sg[0], IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 4);
  w[1] = mkwr(&sg[1], IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr + 1000, p->h.rw_rkey, 5);
  w[0].next = &w[1];
  CHECK(ibv_post_send(s.e.qp, w, &bad) == 0, "post chain");
  expect_wc(s.e.cq, 4, IBV_WC_RETRY_EXC_ERR, "qp_error one-shot");
  expect_wc(s.e.cq, 5, IBV_WC_WR_FLUSH_ERR, "the rest of the chain");
  CHECK(!fabric_file_exists("qp_error"), "qp_error consumed");
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, 0, 4096, 1), "no byte moved");
  reconnect(&s);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 6) == 0, "post");
  expect_wc(s.e.cq, 6, IBV_WC_SUCCESS, "only one WR failed");
  OK("qp_error: exactly one WR fails with RETRY_EXC_ERR, QP in ERR, no byte moved");
  peer_cmd(p, CMD_FILL, R_RW, 0, 4096, 1);
  fabric_file("lose_completion", 1);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 7) == 0, "post");
  expect_no_wc(s.e.cq, 50, "lost completion");
  t_wrs++, t_bytes += 64;
  CHECK(!fabric_file_exists("lose_completion"), "lose_completion consumed");
  CHECK(peer_cmd(p, CMD_CHECK, R_RW, 0, 64, 2), "bytes of the lost WR moved");
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr + 64, p->h.rw_rkey, 8) == 0, "post");
  expect_wc(s.e.cq, 8, IBV_WC_SUCCESS, "next WR completes");
  OK("lose_completion: bytes moved, exactly one completion never delivered");
  int st;
  peer_cmd(p, CMD_DIE, 0, 0, 0, 0);
  CHECK(waitpid(peer_pid, &st, 0) == peer_pid, "reap peer");
  peer_pid = 0;
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 64, s.mr->lkey, p->h.rw_addr, p->h.rw_rkey, 9) == 0, "post");
  expect_wc(s.e.cq, 9, IBV_WC_RETRY_EXC_ERR, "peer process dead");
  OK("dead peer process: RETRY_EXC_ERR");
  print_tally();
}

static void sc_link_env(void) { // run with FAKEVERBS_LINK_DOWN=fake_1
  struct ep a, b;
  ep_init(&a, "fake_0", 64, 16);
  ep_init(&b, "fake_1", 64, 16);
  struct ibv_port_attr pa;
  CHECK(ibv_query_port(a.ctx, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE, "fake_0 ACTIVE");
  CHECK(ibv_query_port(b.ctx, 1, &pa) == 0 && pa.state == IBV_PORT_DOWN, "fake_1 DOWN");
  uint8_t *buf = map_anon(65536);
  struct ibv_mr *ma = reg(a.pd, buf, 65536, ALL_ACCESS), *mb = reg(b.pd, buf, 65536, ALL_ACCESS);
  connect_qp(a.qp, b.qp->qp_num, &b.gid);
  connect_qp(b.qp, a.qp->qp_num, &a.gid);
  CHECK(post(a.qp, IBV_WR_RDMA_WRITE, buf, 64, ma->lkey, (uintptr_t)buf + 1024, mb->rkey, 1) == 0, "post");
  expect_wc(a.cq, 1, IBV_WC_RETRY_EXC_ERR, "responder's link down");
  CHECK(post(b.qp, IBV_WR_RDMA_WRITE, buf, 64, mb->lkey, (uintptr_t)buf + 1024, ma->rkey, 2) == 0, "post");
  expect_wc(b.cq, 2, IBV_WC_RETRY_EXC_ERR, "own link down");
  struct ibv_qp *lo = make_qp(a.pd, a.cq, 16);
  connect_qp(lo, lo->qp_num, &a.gid);
  CHECK(post(lo, IBV_WR_RDMA_WRITE, buf, 64, ma->lkey, (uintptr_t)buf + 1024, ma->rkey, 3) == 0, "post");
  expect_wc(a.cq, 3, IBV_WC_SUCCESS, "fake_0 loopback unaffected");
  OK("FAKEVERBS_LINK_DOWN=fake_1: port DOWN, WRs to or from it RETRY_EXC_ERR");
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

struct poller { struct ibv_cq *cq; int want, got; enum ibv_wc_status st[64]; uint64_t id[64]; };
static void *poll_thread(void *arg) {
  struct poller *p = arg;
  double end = now_ms() + 10000;
  while (p->got < p->want && now_ms() < end) {
    struct ibv_wc wc[8];
    int n = ibv_poll_cq(p->cq, 8, wc);
    for (int i = 0; i < n && p->got < 64; i++) p->st[p->got] = wc[i].status, p->id[p->got++] = wc[i].wr_id;
    if (n == 0) usleep(200);
  }
  return NULL;
}
static void *link_cutter(void *arg) {
  usleep((useconds_t)(uintptr_t)arg);
  fabric_file("link_down.fake_0", 1);
  return NULL;
}

static void sc_delay(void) { // run with FAKEVERBS_WR_DELAY_US=20000
  struct ep e;
  ep_init(&e, "fake_0", 256, 64);
  uint8_t *buf = map_anon(1 * MiB);
  struct ibv_mr *mr = reg(e.pd, buf, 1 * MiB, ALL_ACCESS);
  connect_qp(e.qp, e.qp->qp_num, &e.gid);
  struct ibv_sge sg[20];
  struct ibv_send_wr w[20], *bad;
  for (int i = 0; i < 20; i++) {
    w[i] = mkwr(&sg[i], IBV_WR_RDMA_WRITE, buf, 4096, mr->lkey, (uintptr_t)buf + 65536, mr->rkey, (uint64_t)i);
    w[i].next = i < 19 ? &w[i + 1] : NULL;
  }
  w[4].next = NULL;
  double t0 = now_ms();
  CHECK(ibv_post_send(e.qp, w, &bad) == 0, "post 5");
  double took = now_ms() - t0;
  CHECK(took >= 95, "5 WRs at 20 ms each took %.1f ms", took);
  for (int i = 0; i < 5; i++) expect_wc(e.cq, (uint64_t)i, IBV_WC_SUCCESS, "delayed WR");
  w[4].next = &w[5];
  OK("FAKEVERBS_WR_DELAY_US=20000: 5 WRs took %.0f ms", took);
  // Cut the link 110 ms into a 20-WR chain while another thread polls.
  struct poller pl = {.cq = e.cq, .want = 20};
  pthread_t tp, tc;
  pthread_create(&tp, NULL, poll_thread, &pl);
  pthread_create(&tc, NULL, link_cutter, (void *)(uintptr_t)110000);
  CHECK(ibv_post_send(e.qp, w, &bad) == 0, "post 20");
  pthread_join(tc, NULL);
  pthread_join(tp, NULL);
  fabric_file("link_down.fake_0", 0);
  CHECK(pl.got == 20, "polled %d of 20", pl.got);
  int k = 0;
  while (k < 20 && pl.st[k] == IBV_WC_SUCCESS) k++;
  CHECK(k >= 1 && k <= 18, "%d WRs before the cut", k);
  CHECK(pl.st[k] == IBV_WC_RETRY_EXC_ERR, "WR %d: %s", k, ibv_wc_status_str(pl.st[k]));
  for (int i = k + 1; i < 20; i++) CHECK(pl.st[i] == IBV_WC_WR_FLUSH_ERR, "WR %d: %s", i, ibv_wc_status_str(pl.st[i]));
  for (int i = 0; i < 20; i++) CHECK(pl.id[i] == (uint64_t)i, "completion order");
  OK("link cut mid-transfer: %d successes, then RETRY_EXC_ERR, then %d flushed", k, 19 - k);
}

static void sc_dmabuf(void) {
  struct side s;
  side_init(&s);
  struct peer *p = &s.peer;
  peer_cmd(p, CMD_FILL, R_DMA, 0, DMA_LEN, 5);
  memset(s.buf, 0, DMA_LEN);
  CHECK(post(s.e.qp, IBV_WR_RDMA_READ, s.buf, DMA_LEN, s.mr->lkey, p->h.dma_iova, p->h.dma_rkey, 1) == 0, "post");
  expect_wc(s.e.cq, 1, IBV_WC_SUCCESS, "READ from the peer's dma-buf MR");
  CHECK(matches(s.buf, DMA_LEN, 5, 0), "READ bytes equal the memfd's");
  fill(s.buf, 65536, 6, 0);
  CHECK(post(s.e.qp, IBV_WR_RDMA_WRITE, s.buf, 65536, s.mr->lkey, p->h.dma_iova + 1000, p->h.dma_rkey, 2) == 0, "post");
  expect_wc(s.e.cq, 2, IBV_WC_SUCCESS, "WRITE into the dma-buf MR");
  CHECK(peer_cmd(p, CMD_CHECK, R_DMA, 1000, 65536, 6), "the memfd holds the written bytes");
  CHECK(post(s.e.qp, IBV_WR_RDMA_READ, s.buf, 2, s.mr->lkey, p->h.dma_iova + DMA_LEN - 1, p->h.dma_rkey, 3) == 0, "post");
  expect_wc(s.e.cq, 3, IBV_WC_REM_ACCESS_ERR, "READ past the dma-buf MR");
  reconnect(&s);
  OK("peer dma-buf MR (memfd, unaligned offset, arbitrary iova): READ and WRITE by iova, bounds enforced");
  // A local dma-buf MR as the target of a READ: the bytes land in our memfd.
  int memfd = memfd_create("local", MFD_CLOEXEC);
  CHECK(memfd >= 0 && ftruncate(memfd, 2 * 65536) == 0, "memfd");
  uint64_t iova = 0x1000;
  errno = 0;
  CHECK(!ibv_reg_dmabuf_mr(s.e.pd, 0, 4 * 65536, iova, memfd, ALL_ACCESS) && errno == EINVAL, "range past the buffer");
  errno = 0;
  CHECK(!ibv_reg_dmabuf_mr(s.e.pd, 0, 65536, iova, -1, ALL_ACCESS) && errno == EBADF, "bad fd");
  errno = 0;
  CHECK(!ibv_reg_dmabuf_mr(s.e.pd, 0, 65536, iova, memfd, IBV_ACCESS_REMOTE_WRITE) && errno == EINVAL, "bad access");
  struct ibv_mr *dm = ibv_reg_dmabuf_mr(s.e.pd, 65536, 65536, iova, memfd, ALL_ACCESS);
  CHECK(dm && dm->addr == (void *)(uintptr_t)iova, "local dmabuf mr");
  peer_cmd(p, CMD_FILL, R_RW, 0, 4096, 8);
  CHECK(post(s.e.qp, IBV_WR_RDMA_READ, (void *)(uintptr_t)(iova + 10), 4096, dm->lkey, p->h.rw_addr, p->h.rw_rkey, 4) == 0, "post");
  expect_wc(s.e.cq, 4, IBV_WC_SUCCESS, "READ into a local dma-buf MR");
  uint8_t got[4096];
  CHECK(pread(memfd, got, 4096, 65536 + 10) == 4096 && matches(got, 4096, 8, 0), "memfd holds the READ bytes");
  CHECK(ibv_dereg_mr(dm) == 0, "dereg dmabuf");
  close(memfd);
  OK("local dma-buf MR as an SGE target; reg_dmabuf_mr errors");
  stop_peer(p);
  print_tally();
}

static void sc_channel(void) {
  struct ibv_context *ctx = open_dev("fake_0");
  struct ibv_pd *pd = ibv_alloc_pd(ctx);
  struct ibv_comp_channel *ch = ibv_create_comp_channel(ctx);
  struct ibv_cq *cq = ibv_create_cq(ctx, 64, (void *)0xc0ffee, ch, 0);
  CHECK(pd && ch && cq, "setup");
  struct ibv_qp *qp = make_qp(pd, cq, 16);
  union ibv_gid gid;
  ibv_query_gid(ctx, 1, 1, &gid);
  connect_qp(qp, qp->qp_num, &gid);
  uint8_t *buf = map_anon(65536);
  struct ibv_mr *mr = reg(pd, buf, 65536, ALL_ACCESS);
  CHECK(ibv_req_notify_cq(cq, 0) == 0, "req_notify_cq");
  CHECK(post(qp, IBV_WR_RDMA_WRITE, buf, 64, mr->lkey, (uintptr_t)buf + 1024, mr->rkey, 1) == 0, "post");
  struct ibv_cq *ev_cq = NULL;
  void *ev_ctx = NULL;
  CHECK(ibv_get_cq_event(ch, &ev_cq, &ev_ctx) == 0 && ev_cq == cq && ev_ctx == (void *)0xc0ffee, "event");
  ibv_ack_cq_events(cq, 1);
  expect_wc(cq, 1, IBV_WC_SUCCESS, "polled after the event");
  fcntl(ch->fd, F_SETFL, O_NONBLOCK);
  CHECK(post(qp, IBV_WR_RDMA_WRITE, buf, 64, mr->lkey, (uintptr_t)buf + 1024, mr->rkey, 2) == 0, "post");
  errno = 0;
  CHECK(ibv_get_cq_event(ch, &ev_cq, &ev_ctx) == -1 && errno == EAGAIN, "no event when not armed");
  expect_wc(cq, 2, IBV_WC_SUCCESS, "polled without an event");
  CHECK(ibv_destroy_qp(qp) == 0 && ibv_destroy_cq(cq) == 0 && ibv_destroy_comp_channel(ch) == 0, "teardown");
  OK("completion channel: armed CQ signals once, ibv_get_cq_event returns the CQ and its context");
}

struct worker { struct ibv_qp *qp; struct ibv_cq *cq; struct ibv_mr *mr; uint8_t *buf; int done, bad; };
static void *worker_thread(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < 2000; i++) {
    fill(w->buf, 256, (uint32_t)i, 0);
    if (post(w->qp, IBV_WR_RDMA_WRITE, w->buf, 256, w->mr->lkey, (uintptr_t)w->buf + 4096, w->mr->rkey, (uint64_t)i)) { w->bad++; break; }
    struct ibv_wc wc;
    if (!poll1(w->cq, &wc, 5000) || wc.status != IBV_WC_SUCCESS || wc.wr_id != (uint64_t)i ||
        !matches(w->buf + 4096, 256, (uint32_t)i, 0)) { w->bad++; break; }
    w->done++;
  }
  return NULL;
}

static void sc_threads(void) {
  struct ep e;
  ep_init(&e, "fake_0", 256, 64);
  uint8_t *buf = map_anon(65536), *other = map_anon(1 * MiB);
  struct worker w = {.qp = e.qp, .mr = reg(e.pd, buf, 65536, ALL_ACCESS), .buf = buf};
  struct ibv_cq *cq2 = ibv_create_cq(e.ctx, 64, NULL, NULL, 0);
  connect_qp(e.qp, e.qp->qp_num, &e.gid);
  w.cq = e.cq;
  pthread_t t;
  pthread_create(&t, NULL, worker_thread, &w);
  int cycles = 0;
  while (!w.bad && w.done < 2000) { // the control plane keeps churning meanwhile
    struct ibv_mr *mr = reg(e.pd, other, 1 * MiB, ALL_ACCESS);
    struct ibv_qp *qp = make_qp(e.pd, cycles % 2 ? cq2 : e.cq, 16);
    connect_qp(qp, qp->qp_num, &e.gid);
    CHECK(ibv_destroy_qp(qp) == 0 && ibv_dereg_mr(mr) == 0, "churn teardown");
    cycles++;
  }
  pthread_join(t, NULL);
  CHECK(!w.bad && w.done == 2000, "worker: %d done, %d bad", w.done, w.bad);
  OK("2000 post/poll on a worker thread while the main thread did %d reg/create/connect/destroy cycles", cycles);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  static const struct { const char *name; void (*run)(void); } scenarios[] = {
      {"nodevice", sc_nodevice}, {"query", sc_query},     {"objects", sc_objects}, {"modify", sc_modify},
      {"transfer", sc_transfer}, {"errors", sc_errors},   {"posting", sc_posting}, {"faults", sc_faults},
      {"link_env", sc_link_env}, {"delay", sc_delay},     {"dmabuf", sc_dmabuf},   {"channel", sc_channel},
      {"threads", sc_threads},
  };
  for (size_t i = 0; argc == 2 && i < sizeof scenarios / sizeof *scenarios; i++)
    if (strcmp(argv[1], scenarios[i].name) == 0) {
      scenarios[i].run();
      printf("done %s\n", argv[1]);
      return 0;
    }
  fprintf(stderr, "usage: %s <scenario>\n", argv[0]);
  return 2;
}
