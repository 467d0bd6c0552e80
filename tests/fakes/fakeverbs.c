// fakeverbs.c — a userspace stand-in for libibverbs (RDMA verbs), built as libfakeverbs.so by
// tests/fakes/build.ts. Tests only: the CI machines have no RDMA NIC and cannot load Soft-RoCE
// (transfer-engine spec §7.5), so this library plays the NIC, the fabric and the peer NICs.
//
// It is compiled against the real <infiniband/verbs.h>, so every struct it hands out has the real
// layout and the static-inline verbs (ibv_post_send, ibv_poll_cq, ...) reach it through
// ctx->ops exactly as they reach a provider. RC QPs only, RDMA WRITE / READ only, executed
// synchronously inside post_send: memcpy within a process, process_vm_writev/readv across
// processes. See tests/fakes/README.md for the knobs and the limits.
//
// The fabric: <FAKEVERBS_FABRIC>/fabric.bin, mmap'ed MAP_SHARED by every process that lists the
// devices. All multi-byte values are little-endian (host order on x86-64 / aarch64):
//   0    u64  magic "FAKEVRB1"           8   u32 version (1)      12 u32 header size (4096)
//   16   u64  QPNs handed out (qp_num = 0x100 + n)                 24 u64 key generations handed out
//   32   u32  QP table entries (4096)    36  u32 MR table entries (4096)
//   64   stats: device i (0..7) at 64 + i*24: u64 wrs executed OK, u64 bytes moved, u64 error
//        completions (flushes included); counted on the requester's device, updated atomically.
//   4096 QP table (64-byte entries), then the MR table (64-byte entries).
// An entry is claimed by CAS on its owner-pid word (0 or a dead pid = free) and published by a
// release store of its key (qp_num / rkey); readers acquire-load the key first.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

// verbs.h turns these into inline wrappers; we export the real entry points.
#undef ibv_query_port
#undef ibv_reg_mr
#undef ibv_reg_mr_iova
#undef ibv_get_device_list

#define EXPORT __attribute__((visibility("default")))

enum {
  FV_VERSION = 1,
  FV_HEADER = 4096,
  FV_MAX_DEV = 8,
  FV_NQP = 4096, // power of two
  FV_NMR = 4096, // power of two: an MR's slot is the low 12 bits of its keys
  FV_STATS_OFF = 64,
  FV_QPN_BASE = 0x100,
  // Device limits (ibv_query_device); per context except max_mr_size.
  FV_MAX_QP = 1024,
  FV_MAX_QP_WR = 1024,
  FV_MAX_SGE = 4,
  FV_MAX_CQ = 64,
  FV_MAX_CQE = 8192,
  FV_MAX_MR = 4096,
  FV_MAX_PD = 64,
  FV_MAX_RD_ATOM = 16,
  FV_MAX_INLINE = 64,
  FV_GID_TBL_LEN = 2,
};
#define FV_MAX_MR_SIZE (1ULL << 40)
#define FV_MAX_MSG_SZ (1U << 31)
#define FV_KNOWN_ACCESS                                                                            \
  (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |                    \
   IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND | IBV_ACCESS_HUGETLB)
#define FV_QP_ACCESS                                                                               \
  (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |                    \
   IBV_ACCESS_REMOTE_ATOMIC)

// ---------------------------------------------------------------------------------------------
// Shared fabric layout

struct fv_stat {
  _Atomic uint64_t wrs, bytes, errors;
};

struct fv_qp_ent {              // 64 bytes
  _Atomic uint32_t qpn;         // 0 = free; release-stored last
  _Atomic int32_t pid;          // owner; the claim word
  _Atomic uint32_t state;       // enum ibv_qp_state, as the hardware sees it
  _Atomic uint32_t dest_qpn;
  _Atomic uint32_t access;      // qp_access_flags
  _Atomic uint32_t env_down;    // the owner's FAKEVERBS_LINK_DOWN lists its device
  uint32_t dev;
  uint32_t pad;
  uint64_t pd_id;
  _Atomic uint64_t dgid[2];     // raw bytes of the RTR dgid
  uint64_t pad2;
};

struct fv_mr_ent {              // 64 bytes
  _Atomic uint32_t rkey;        // 0 = free; release-stored last
  _Atomic int32_t pid;
  uint32_t lkey, access;
  uint64_t pd_id, iova, length;
  uint64_t where;               // owner-process address holding the byte at iova
  uint64_t pad[2];
};

struct fv_fabric {
  _Atomic uint64_t magic;
  _Atomic uint32_t version, header_size;
  _Atomic uint64_t next_qpn, next_key;
  _Atomic uint32_t nqp, nmr;
  uint8_t reserved[FV_STATS_OFF - 40];
  struct fv_stat stats[FV_MAX_DEV];
  uint8_t pad[FV_HEADER - FV_STATS_OFF - FV_MAX_DEV * sizeof(struct fv_stat)];
  struct fv_qp_ent qps[FV_NQP];
  struct fv_mr_ent mrs[FV_NMR];
};
_Static_assert(offsetof(struct fv_fabric, stats) == FV_STATS_OFF, "stats offset");
_Static_assert(offsetof(struct fv_fabric, qps) == FV_HEADER, "header size");
_Static_assert(sizeof(struct fv_qp_ent) == 64 && sizeof(struct fv_mr_ent) == 64, "entry size");

// ---------------------------------------------------------------------------------------------
// Process-local objects: the public struct first, so a pointer to one is a pointer to the other.

struct fake_dev {
  struct ibv_device dev;
  int index;
};

struct fake_ctx {
  struct ibv_context ctx;
  int dev;
  int npd, ncq, nqp, nmr, nchan; // under g_lock
};

struct fake_pd {
  struct ibv_pd pd;
  int users; // MRs + QPs, under g_lock
};

struct fake_mr {
  struct ibv_mr mr;
  int slot;
  void *map;       // dma-buf mapping to munmap, or NULL
  size_t map_len;
};

struct fake_chan {
  struct ibv_comp_channel ch;
  int wfd;   // write end of the pipe whose read end is ch.fd
  int users; // CQs, under g_lock
};

struct fake_qp;
struct cqe {
  struct ibv_wc wc;
  struct fake_qp *qp; // whose send-queue slots this completion frees (NULL once the QP is gone)
  uint32_t freed;
};

struct fake_cq {
  struct ibv_cq cq;
  pthread_mutex_t lock;
  struct cqe *ring;
  int cap, head, count, reserved, armed;
  int users; // QPs, under g_lock
};

struct fake_qp {
  struct ibv_qp qp;
  pthread_mutex_t lock;        // serialises post_send / modify / destroy on this QP
  struct ibv_qp_attr attr;     // last values set by modify_qp (for ibv_query_qp)
  struct ibv_qp_cap cap;
  int sq_sig_all, dev, slot;
  enum ibv_qp_state hw_state;  // differs from qp.state after an error, as on hardware
  _Atomic int outstanding;     // send WRs posted and not yet freed by a polled completion
  uint32_t unsignaled;         // completion-less WRs since the last completion
  int peer_hint;               // fabric slot of the remote QP last seen
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fv_fabric *fab;
static char fab_dir[3072];
static struct fake_dev devs[FV_MAX_DEV];
static unsigned env_down_mask; // FAKEVERBS_LINK_DOWN, per device index
static long wr_delay_us;
static uint32_t next_handle = 1;
static atomic_int overflow_warned, eperm_warned;

static int fail_int(int e) { errno = e; return e; }
static void *fail_ptr(int e) { errno = e; return NULL; }

// ---------------------------------------------------------------------------------------------
// Fabric

static int pid_alive(int32_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

// Claims the slot whose owner word is `w` if it is free or its owner died.
static int claim(_Atomic int32_t *w, int32_t me, int allow_dead) {
  int32_t cur = atomic_load(w);
  if (cur != 0 && (!allow_dead || cur == me || pid_alive(cur))) return 0;
  return atomic_compare_exchange_strong(w, &cur, me);
}

// Two passes: free slots first, so kill() probes happen only when the table looks full.
#define CLAIM_SLOT(table, n, me, out)                                                              \
  do {                                                                                             \
    (out) = -1;                                                                                    \
    for (int pass = 0; pass < 2 && (out) < 0; pass++)                                              \
      for (int i_ = 0; i_ < (n); i_++)                                                             \
        if (claim(&(table)[i_].pid, (me), pass)) { (out) = i_; break; }                            \
  } while (0)

static int open_fabric_locked(void) {
  if (fab) return 0;
  const char *dir = getenv("FAKEVERBS_FABRIC");
  if (!dir || dir[0] != '/' || strlen(dir) > sizeof fab_dir - 64) {
    fprintf(stderr, "fakeverbs: FAKEVERBS_FABRIC must be an absolute directory path\n");
    return EINVAL;
  }
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) return errno;
  char path[sizeof fab_dir + 16];
  snprintf(path, sizeof path, "%s/fabric.bin", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return errno;
  // ftruncate to the same size keeps the contents, so every process may do it.
  struct fv_fabric *f = MAP_FAILED;
  if (ftruncate(fd, sizeof *f) == 0)
    f = mmap(NULL, sizeof *f, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (f == MAP_FAILED) return e;
  // A zeroed file is a valid empty fabric; stamp the header (first process wins the CAS).
  uint64_t magic, zero = 0;
  memcpy(&magic, "FAKEVRB1", 8);
  uint32_t v0 = 0;
  atomic_compare_exchange_strong(&f->magic, &zero, magic);
  atomic_compare_exchange_strong(&f->version, &v0, FV_VERSION);
  if (atomic_load(&f->magic) != magic || atomic_load(&f->version) != FV_VERSION) {
    fprintf(stderr, "fakeverbs: %s is not a version-%d fabric\n", path, FV_VERSION);
    munmap(f, sizeof *f);
    return EPROTO;
  }
  atomic_store(&f->header_size, FV_HEADER);
  atomic_store(&f->nqp, FV_NQP);
  atomic_store(&f->nmr, FV_NMR);
  strcpy(fab_dir, dir);

  const char *d = getenv("FAKEVERBS_LINK_DOWN");
  for (int i = 0; d && i < FV_MAX_DEV; i++) {
    char name[16];
    int n = snprintf(name, sizeof name, "fake_%d", i);
    for (const char *p = d; (p = strstr(p, name)) != NULL; p += n)
      if ((p == d || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) env_down_mask |= 1u << i;
  }
  const char *delay = getenv("FAKEVERBS_WR_DELAY_US");
  wr_delay_us = delay ? strtol(delay, NULL, 10) : 0;
  fab = f;
  return 0;
}

static int file_exists(const char *name) {
  char path[sizeof fab_dir + 64];
  snprintf(path, sizeof path, "%s/%s", fab_dir, name);
  return access(path, F_OK) == 0;
}

// The one-shot knobs: whoever unlinks the file first owns the fault.
static int take_oneshot(const char *name) {
  char path[sizeof fab_dir + 64];
  snprintf(path, sizeof path, "%s/%s", fab_dir, name);
  return unlink(path) == 0;
}

static int link_file_down(int dev) {
  char name[32];
  snprintf(name, sizeof name, "link_down.fake_%d", dev);
  return file_exists(name);
}

static int link_down(int dev) { return (env_down_mask >> dev & 1) || link_file_down(dev); }

static void gid_of(int dev, int index, union ibv_gid *gid) {
  memset(gid, 0, sizeof *gid);
  if (index == 0) {
    gid->raw[0] = 0xfe, gid->raw[1] = 0x80, gid->raw[15] = (uint8_t)(dev + 1);
  } else {
    gid->raw[10] = gid->raw[11] = 0xff;
    gid->raw[12] = 127, gid->raw[13] = 0, gid->raw[14] = (uint8_t)dev, gid->raw[15] = 1;
  }
}

static int dev_has_gid(int dev, const uint8_t raw[16]) {
  for (int i = 0; i < FV_GID_TBL_LEN; i++) {
    union ibv_gid g;
    gid_of(dev, i, &g);
    if (memcmp(g.raw, raw, 16) == 0) return 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Devices, contexts, queries

static struct fake_dev *as_dev(struct ibv_device *d) {
  for (int i = 0; i < FV_MAX_DEV; i++)
    if (d == &devs[i].dev) return &devs[i];
  return NULL;
}

EXPORT struct ibv_device **ibv_get_device_list(int *num) {
  int n = 0;
  pthread_mutex_lock(&g_lock);
  if (getenv("FAKEVERBS_FABRIC")) { // no fabric: "RDMA stack present, no device"
    int e = open_fabric_locked();
    if (e) { pthread_mutex_unlock(&g_lock); return fail_ptr(e); }
    const char *c = getenv("FAKEVERBS_DEVICES");
    n = c ? atoi(c) : 2;
    n = n < 0 ? 0 : n > FV_MAX_DEV ? FV_MAX_DEV : n;
  }
  for (int i = 0; i < n; i++) {
    struct fake_dev *d = &devs[i];
    d->index = i;
    d->dev.node_type = IBV_NODE_CA;
    d->dev.transport_type = IBV_TRANSPORT_IB;
    snprintf(d->dev.name, sizeof d->dev.name, "fake_%d", i);
    snprintf(d->dev.dev_name, sizeof d->dev.dev_name, "uverbs%d", i);
    snprintf(d->dev.dev_path, sizeof d->dev.dev_path, "/sys/class/infiniband_verbs/uverbs%d", i);
    snprintf(d->dev.ibdev_path, sizeof d->dev.ibdev_path, "/sys/class/infiniband/fake_%d", i);
  }
  pthread_mutex_unlock(&g_lock);
  struct ibv_device **list = calloc((size_t)n + 1, sizeof *list);
  if (!list) return fail_ptr(ENOMEM);
  for (int i = 0; i < n; i++) list[i] = &devs[i].dev;
  if (num) *num = n;
  return list;
}

EXPORT void ibv_free_device_list(struct ibv_device **list) { free(list); }

EXPORT const char *ibv_get_device_name(struct ibv_device *d) { return d ? d->name : NULL; }

static int fv_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc);
static int fv_req_notify_cq(struct ibv_cq *cq, int solicited_only);
static int fv_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad);
static int fv_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad);

EXPORT struct ibv_context *ibv_open_device(struct ibv_device *device) {
  struct fake_dev *d = as_dev(device);
  if (!d || !fab) return fail_ptr(ENODEV);
  struct fake_ctx *c = calloc(1, sizeof *c);
  if (!c) return fail_ptr(ENOMEM);
  // Peers read and write our registered memory with process_vm_*; under Yama ptrace_scope=1 that
  // needs our consent (per process, so here rather than once per fabric: fork does not inherit
  // it). EINVAL without Yama is fine.
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  c->ctx.device = device;
  c->ctx.ops.poll_cq = fv_poll_cq;
  c->ctx.ops.req_notify_cq = fv_req_notify_cq;
  c->ctx.ops.post_send = fv_post_send;
  c->ctx.ops.post_recv = fv_post_recv;
  // Real, pollable fds so callers can fcntl/epoll them (/dev/null cannot be epolled); nothing
  // ever makes them readable: there are no async events.
  c->ctx.async_fd = eventfd(0, EFD_CLOEXEC);
  c->ctx.cmd_fd = eventfd(0, EFD_CLOEXEC);
  if (c->ctx.async_fd < 0 || c->ctx.cmd_fd < 0) {
    int e = errno;
    if (c->ctx.async_fd >= 0) close(c->ctx.async_fd);
    free(c);
    return fail_ptr(e);
  }
  c->ctx.num_comp_vectors = 1;
  c->ctx.abi_compat = NULL; // not a verbs_context: the inline ibv_query_port uses our compat one
  pthread_mutex_init(&c->ctx.mutex, NULL);
  c->dev = d->index;
  return &c->ctx;
}

EXPORT int ibv_close_device(struct ibv_context *ctx) {
  struct fake_ctx *c = (struct fake_ctx *)ctx;
  pthread_mutex_lock(&g_lock);
  int live = c->npd + c->ncq + c->nqp + c->nmr + c->nchan;
  pthread_mutex_unlock(&g_lock);
  close(ctx->async_fd);
  close(ctx->cmd_fd);
  // The kernel would tear the children down; we cannot, so leak the context rather than leave
  // them pointing at freed memory.
  if (live) fprintf(stderr, "fakeverbs: ibv_close_device with %d objects still open\n", live);
  else free(c);
  return 0;
}

EXPORT int ibv_query_device(struct ibv_context *ctx, struct ibv_device_attr *a) {
  int dev = ((struct fake_ctx *)ctx)->dev;
  memset(a, 0, sizeof *a);
  snprintf(a->fw_ver, sizeof a->fw_ver, "fake-1");
  a->node_guid = a->sys_image_guid = __builtin_bswap64(0x0200000000000000ULL | (uint64_t)(dev + 1));
  a->max_mr_size = FV_MAX_MR_SIZE;
  a->page_size_cap = ~4095ULL;
  a->max_qp = FV_MAX_QP;
  a->max_qp_wr = FV_MAX_QP_WR;
  a->max_sge = a->max_sge_rd = FV_MAX_SGE;
  a->max_cq = FV_MAX_CQ;
  a->max_cqe = FV_MAX_CQE;
  a->max_mr = FV_MAX_MR;
  a->max_pd = FV_MAX_PD;
  a->max_qp_rd_atom = a->max_qp_init_rd_atom = FV_MAX_RD_ATOM;
  a->max_res_rd_atom = FV_MAX_QP * FV_MAX_RD_ATOM;
  a->atomic_cap = IBV_ATOMIC_NONE;
  a->max_pkeys = 1;
  a->local_ca_ack_delay = 16;
  a->phys_port_cnt = 1;
  return 0;
}

EXPORT int ibv_query_port(struct ibv_context *ctx, uint8_t port, struct _compat_ibv_port_attr *out) {
  if (port != 1) return fail_int(EINVAL);
  int down = link_down(((struct fake_ctx *)ctx)->dev);
  struct ibv_port_attr *a = (struct ibv_port_attr *)out;
  memset(a, 0, sizeof *a);
  a->state = down ? IBV_PORT_DOWN : IBV_PORT_ACTIVE;
  a->max_mtu = a->active_mtu = IBV_MTU_4096;
  a->gid_tbl_len = FV_GID_TBL_LEN;
  a->max_msg_sz = FV_MAX_MSG_SZ;
  a->pkey_tbl_len = 1;
  a->lid = 0;
  a->active_width = 2;  // 4X
  a->active_speed = 32; // 25 Gb/s per lane: 100 Gb/s
  a->phys_state = down ? 3 /* disabled */ : 5 /* link up */;
  a->link_layer = IBV_LINK_LAYER_ETHERNET;
  return 0;
}

EXPORT int ibv_query_gid(struct ibv_context *ctx, uint8_t port, int index, union ibv_gid *gid) {
  if (port != 1 || index < 0 || index >= FV_GID_TBL_LEN || !gid) { errno = EINVAL; return -1; }
  gid_of(((struct fake_ctx *)ctx)->dev, index, gid);
  return 0;
}

EXPORT int ibv_fork_init(void) { return 0; } // nothing to do: we never depend on page pinning

// Real libibverbs strings (rdma-core 44 verbs.c).
EXPORT const char *ibv_wc_status_str(enum ibv_wc_status status) {
  static const char *const str[] = {
      "success", "local length error", "local QP operation error",
      "local EE context operation error", "local protection error", "Work Request Flushed Error",
      "memory management operation error", "bad response error", "local access error",
      "remote invalid request error", "remote access error", "remote operation error",
      "transport retry counter exceeded", "RNR retry counter exceeded", "local RDD violation error",
      "remote invalid RD request", "aborted error", "invalid EE context number",
      "invalid EE context state", "fatal error", "response timeout error", "general error",
      "TM error", "TM software rendezvous",
  };
  return (unsigned)status < sizeof str / sizeof *str ? str[status] : "unknown";
}

// ---------------------------------------------------------------------------------------------
// PD and MR

EXPORT struct ibv_pd *ibv_alloc_pd(struct ibv_context *ctx) {
  struct fake_ctx *c = (struct fake_ctx *)ctx;
  struct fake_pd *p = calloc(1, sizeof *p);
  if (!p) return fail_ptr(ENOMEM);
  pthread_mutex_lock(&g_lock);
  if (c->npd >= FV_MAX_PD) { pthread_mutex_unlock(&g_lock); free(p); return fail_ptr(ENOMEM); }
  c->npd++;
  p->pd.handle = next_handle++; // also the PD's identity in the fabric (with the pid)
  pthread_mutex_unlock(&g_lock);
  p->pd.context = ctx;
  return &p->pd;
}

EXPORT int ibv_dealloc_pd(struct ibv_pd *pd) {
  struct fake_pd *p = (struct fake_pd *)pd;
  pthread_mutex_lock(&g_lock);
  if (p->users) { pthread_mutex_unlock(&g_lock); return fail_int(EBUSY); }
  ((struct fake_ctx *)pd->context)->npd--;
  pthread_mutex_unlock(&g_lock);
  free(p);
  return 0;
}

static int check_access(int access) {
  unsigned a = (unsigned)access & ~(unsigned)IBV_ACCESS_OPTIONAL_RANGE;
  if (a & ~(unsigned)FV_KNOWN_ACCESS) return EINVAL;
  // ib_check_mr_access: remote write/atomic needs local write.
  if ((a & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) && !(a & IBV_ACCESS_LOCAL_WRITE))
    return EINVAL;
  return 0;
}

static int writable(int access) {
  return access & (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC);
}

// Pinning (get_user_pages) fails on unmapped or PROT_NONE pages, and on read-only pages when the
// MR is writable: walk /proc/self/maps to see that [a, a+len) is covered with the needed rights.
// This is also what catches a plain reg_mr of fake-CUDA device memory (no nvidia_peermem).
static int range_pinnable(uintptr_t a, size_t len, int need_write) {
  FILE *f = fopen("/proc/self/maps", "re");
  if (!f) return 0;
  uintptr_t cur = a, end = a + len;
  char *line = NULL;
  size_t cap = 0;
  int ok = 0;
  while (getline(&line, &cap, f) > 0) {
    unsigned long lo, hi;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || hi <= cur) continue;
    if (lo > cur || perms[0] != 'r' || (need_write && perms[1] != 'w')) break;
    cur = hi;
    if (cur >= end) { ok = 1; break; }
  }
  free(line);
  fclose(f);
  return ok;
}

// Records an MR in this process and in the fabric. `where` is where the byte at `iova` lives.
static struct ibv_mr *publish_mr(struct ibv_pd *pd, uint64_t iova, size_t length, void *addr,
                                 void *where, int access, void *map, size_t map_len) {
  struct fake_ctx *c = (struct fake_ctx *)pd->context;
  struct fake_mr *m = calloc(1, sizeof *m);
  if (!m) return fail_ptr(ENOMEM);
  int32_t me = getpid();
  int slot;
  pthread_mutex_lock(&g_lock);
  if (c->nmr >= FV_MAX_MR) slot = -1;
  else CLAIM_SLOT(fab->mrs, FV_NMR, me, slot);
  if (slot < 0) { pthread_mutex_unlock(&g_lock); free(m); return fail_ptr(ENOMEM); }
  c->nmr++;
  ((struct fake_pd *)pd)->users++;
  m->mr.handle = next_handle++;
  pthread_mutex_unlock(&g_lock);
  // Keys carry their slot in the low bits (O(1) lookup, like mlx5's index|variant keys) and a
  // fabric-wide generation above: unique until 2^19 registrations, never 0.
  uint64_t gen = atomic_fetch_add(&fab->next_key, 1) + 1;
  uint32_t rkey = (uint32_t)((2 * gen) << 12) | (uint32_t)slot;
  uint32_t lkey = (uint32_t)((2 * gen + 1) << 12) | (uint32_t)slot;
  if (rkey == 0) rkey = (1u << 12) | (uint32_t)slot;
  struct fv_mr_ent *e = &fab->mrs[slot];
  atomic_store(&e->rkey, 0); // a reclaimed slot: hide it while refilling
  e->lkey = lkey;
  e->access = (uint32_t)access;
  e->pd_id = pd->handle;
  e->iova = iova;
  e->length = length;
  e->where = (uint64_t)(uintptr_t)where;
  atomic_store_explicit(&e->rkey, rkey, memory_order_release);
  m->slot = slot;
  m->map = map;
  m->map_len = map_len;
  m->mr.context = pd->context;
  m->mr.pd = pd;
  m->mr.addr = addr;
  m->mr.length = length;
  m->mr.lkey = lkey;
  m->mr.rkey = rkey;
  return &m->mr;
}

EXPORT struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
                                       unsigned int access) {
  if (!pd || !addr || length == 0 || length > FV_MAX_MR_SIZE) return fail_ptr(EINVAL);
  int e = check_access((int)access);
  if (e) return fail_ptr(e);
  if ((uintptr_t)addr + length < (uintptr_t)addr) return fail_ptr(EINVAL);
  if (!range_pinnable((uintptr_t)addr, length, writable((int)access))) return fail_ptr(EFAULT);
  return publish_mr(pd, iova, length, addr, addr, (int)access, NULL, 0);
}

EXPORT struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access) {
  return ibv_reg_mr_iova2(pd, addr, length, (uintptr_t)addr, (unsigned)access);
}

EXPORT struct ibv_mr *ibv_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
                                      int access) {
  return ibv_reg_mr_iova2(pd, addr, length, iova, (unsigned)access);
}

// The GPUDirect path: the fd is a dma-buf (with the fake libcuda, a dup of the memfd behind its
// "device memory"); mapping it here gives us the bytes, and peers address them by iova.
EXPORT struct ibv_mr *ibv_reg_dmabuf_mr(struct ibv_pd *pd, uint64_t offset, size_t length,
                                        uint64_t iova, int fd, int access) {
  if (!pd || length == 0 || length > FV_MAX_MR_SIZE) return fail_ptr(EINVAL);
  int e = check_access(access);
  if (e) return fail_ptr(e);
  struct stat st;
  if (fstat(fd, &st) != 0) return fail_ptr(errno);
  // A range past the buffer's end is refused up front (mapping it would SIGBUS later).
  if (st.st_size > 0 && (offset > (uint64_t)st.st_size || length > (uint64_t)st.st_size - offset))
    return fail_ptr(EINVAL);
  // Tensors are packed, so the offset need not be page-aligned; mmap's must be.
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), base = offset & ~(page - 1);
  size_t map_len = length + (size_t)(offset - base);
  void *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
  if (map == MAP_FAILED) return fail_ptr(errno);
  struct ibv_mr *mr = publish_mr(pd, iova, length, (void *)(uintptr_t)iova,
                                 (char *)map + (offset - base), access, map, map_len);
  if (!mr) { e = errno; munmap(map, map_len); errno = e; }
  return mr;
}

EXPORT int ibv_dereg_mr(struct ibv_mr *mr) {
  struct fake_mr *m = (struct fake_mr *)mr;
  struct fv_mr_ent *e = &fab->mrs[m->slot];
  atomic_store(&e->rkey, 0); // peers' later requests with this rkey now fail
  atomic_store(&e->pid, 0);
  pthread_mutex_lock(&g_lock);
  ((struct fake_pd *)mr->pd)->users--;
  ((struct fake_ctx *)mr->context)->nmr--;
  pthread_mutex_unlock(&g_lock);
  if (m->map) munmap(m->map, m->map_len);
  free(m);
  return 0;
}

// Looks up an MR by key: its slot is in the key's low bits. `lkey` selects which key to match.
static struct fv_mr_ent *find_mr(uint32_t key, int lkey) {
  struct fv_mr_ent *e = &fab->mrs[key & (FV_NMR - 1)];
  uint32_t r = atomic_load_explicit(&e->rkey, memory_order_acquire);
  if (r == 0 || (lkey ? e->lkey : r) != key) return NULL;
  return e;
}

static int in_range(uint64_t addr, uint64_t len, uint64_t base, uint64_t size) {
  return addr >= base && len <= size && addr - base <= size - len;
}

// ---------------------------------------------------------------------------------------------
// Completion channels and CQs

EXPORT struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *ctx) {
  struct fake_chan *ch = calloc(1, sizeof *ch);
  if (!ch) return fail_ptr(ENOMEM);
  // A pipe rather than an eventfd: each event carries the CQ pointer (8 bytes, atomic writes).
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) { int e = errno; free(ch); return fail_ptr(e); }
  fcntl(p[1], F_SETFL, O_NONBLOCK);
  ch->ch.context = ctx;
  ch->ch.fd = p[0];
  ch->wfd = p[1];
  pthread_mutex_lock(&g_lock);
  ((struct fake_ctx *)ctx)->nchan++;
  pthread_mutex_unlock(&g_lock);
  return &ch->ch;
}

EXPORT int ibv_destroy_comp_channel(struct ibv_comp_channel *channel) {
  struct fake_chan *ch = (struct fake_chan *)channel;
  pthread_mutex_lock(&g_lock);
  if (ch->users) { pthread_mutex_unlock(&g_lock); return fail_int(EBUSY); }
  ((struct fake_ctx *)channel->context)->nchan--;
  pthread_mutex_unlock(&g_lock);
  close(ch->ch.fd);
  close(ch->wfd);
  free(ch);
  return 0;
}

EXPORT struct ibv_cq *ibv_create_cq(struct ibv_context *ctx, int cqe, void *cq_context,
                                    struct ibv_comp_channel *channel, int comp_vector) {
  struct fake_ctx *c = (struct fake_ctx *)ctx;
  if (cqe < 1 || cqe > FV_MAX_CQE || comp_vector < 0 || comp_vector >= ctx->num_comp_vectors ||
      (channel && channel->context != ctx))
    return fail_ptr(EINVAL);
  struct fake_cq *q = calloc(1, sizeof *q);
  struct cqe *ring = calloc((size_t)cqe, sizeof *ring);
  if (!q || !ring) { free(q); free(ring); return fail_ptr(ENOMEM); }
  pthread_mutex_lock(&g_lock);
  if (c->ncq >= FV_MAX_CQ) { pthread_mutex_unlock(&g_lock); free(q); free(ring); return fail_ptr(ENOMEM); }
  c->ncq++;
  if (channel) ((struct fake_chan *)channel)->users++;
  q->cq.handle = next_handle++;
  pthread_mutex_unlock(&g_lock);
  q->ring = ring;
  q->cap = cqe;
  pthread_mutex_init(&q->lock, NULL);
  q->cq.context = ctx;
  q->cq.channel = channel;
  q->cq.cq_context = cq_context;
  q->cq.cqe = cqe;
  pthread_mutex_init(&q->cq.mutex, NULL);
  pthread_cond_init(&q->cq.cond, NULL);
  return &q->cq;
}

EXPORT int ibv_destroy_cq(struct ibv_cq *cq) {
  struct fake_cq *q = (struct fake_cq *)cq;
  pthread_mutex_lock(&g_lock);
  if (q->users) { pthread_mutex_unlock(&g_lock); return fail_int(EBUSY); }
  ((struct fake_ctx *)cq->context)->ncq--;
  if (cq->channel) ((struct fake_chan *)cq->channel)->users--;
  pthread_mutex_unlock(&g_lock);
  pthread_mutex_destroy(&q->lock);
  free(q->ring);
  free(q);
  return 0;
}

// A slot is reserved before a WR executes so that its completion can never overflow the CQ.
static int cq_reserve(struct fake_cq *q) {
  pthread_mutex_lock(&q->lock);
  int ok = q->count + q->reserved < q->cap;
  if (ok) q->reserved++;
  pthread_mutex_unlock(&q->lock);
  return ok;
}

static void cq_complete(struct fake_cq *q, const struct cqe *e) {
  pthread_mutex_lock(&q->lock);
  q->reserved--;
  if (e) {
    q->ring[(q->head + q->count) % q->cap] = *e;
    q->count++;
    if (q->armed && q->cq.channel) {
      q->armed = 0;
      struct ibv_cq *p = &q->cq;
      if (write(((struct fake_chan *)q->cq.channel)->wfd, &p, sizeof p) != sizeof p)
        fprintf(stderr, "fakeverbs: completion event lost (channel pipe full)\n");
    }
  }
  pthread_mutex_unlock(&q->lock);
}

// Drops a QP's completions from a CQ (as mlx5 does on destroy and on reset), compacting the ring.
static void cq_clean(struct fake_cq *q, struct fake_qp *qp) {
  pthread_mutex_lock(&q->lock);
  int kept = 0;
  for (int i = 0; i < q->count; i++) {
    struct cqe e = q->ring[(q->head + i) % q->cap];
    if (e.qp != qp) q->ring[(q->head + kept++) % q->cap] = e;
  }
  q->count = kept;
  pthread_mutex_unlock(&q->lock);
}

static int fv_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc) {
  struct fake_cq *q = (struct fake_cq *)cq;
  if (n < 0) return -EINVAL;
  pthread_mutex_lock(&q->lock);
  int got = 0;
  for (; got < n && q->count > 0; got++) {
    struct cqe *e = &q->ring[q->head];
    wc[got] = e->wc;
    if (e->qp) atomic_fetch_sub(&e->qp->outstanding, (int)e->freed);
    q->head = (q->head + 1) % q->cap;
    q->count--;
  }
  pthread_mutex_unlock(&q->lock);
  return got;
}

static int fv_req_notify_cq(struct ibv_cq *cq, int solicited_only) {
  (void)solicited_only; // every completion we make is "solicited enough"
  struct fake_cq *q = (struct fake_cq *)cq;
  pthread_mutex_lock(&q->lock);
  q->armed = 1;
  pthread_mutex_unlock(&q->lock);
  return 0;
}

EXPORT int ibv_get_cq_event(struct ibv_comp_channel *channel, struct ibv_cq **cq, void **cq_context) {
  struct ibv_cq *p;
  ssize_t n = read(channel->fd, &p, sizeof p); // blocks unless the caller set O_NONBLOCK
  if (n != sizeof p) { if (n >= 0) errno = EIO; return -1; }
  *cq = p;
  *cq_context = p->cq_context;
  return 0;
}

EXPORT void ibv_ack_cq_events(struct ibv_cq *cq, unsigned int nevents) {
  pthread_mutex_lock(&cq->mutex);
  cq->comp_events_completed += nevents;
  pthread_mutex_unlock(&cq->mutex);
}

// ---------------------------------------------------------------------------------------------
// QPs

EXPORT struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *a) {
  struct fake_ctx *c = (struct fake_ctx *)pd->context;
  if (a->qp_type != IBV_QPT_RC || !a->send_cq || !a->recv_cq || a->srq ||
      a->send_cq->context != pd->context || a->recv_cq->context != pd->context ||
      a->cap.max_send_wr > FV_MAX_QP_WR || a->cap.max_recv_wr > FV_MAX_QP_WR ||
      a->cap.max_send_sge > FV_MAX_SGE || a->cap.max_recv_sge > FV_MAX_SGE ||
      a->cap.max_inline_data > FV_MAX_INLINE)
    return fail_ptr(EINVAL);
  struct fake_qp *q = calloc(1, sizeof *q);
  if (!q) return fail_ptr(ENOMEM);
  int32_t me = getpid();
  int slot;
  pthread_mutex_lock(&g_lock);
  if (c->nqp >= FV_MAX_QP) slot = -1;
  else CLAIM_SLOT(fab->qps, FV_NQP, me, slot);
  if (slot < 0) { pthread_mutex_unlock(&g_lock); free(q); return fail_ptr(ENOMEM); }
  c->nqp++;
  ((struct fake_pd *)pd)->users++;
  ((struct fake_cq *)a->send_cq)->users++;
  ((struct fake_cq *)a->recv_cq)->users++;
  q->qp.handle = next_handle++;
  pthread_mutex_unlock(&g_lock);
  uint32_t qpn = FV_QPN_BASE + (uint32_t)atomic_fetch_add(&fab->next_qpn, 1);
  struct fv_qp_ent *e = &fab->qps[slot];
  atomic_store(&e->qpn, 0);
  atomic_store(&e->state, IBV_QPS_RESET);
  atomic_store(&e->dest_qpn, 0);
  atomic_store(&e->access, 0);
  atomic_store(&e->env_down, env_down_mask >> c->dev & 1);
  atomic_store(&e->dgid[0], 0);
  atomic_store(&e->dgid[1], 0);
  e->dev = (uint32_t)c->dev;
  e->pd_id = pd->handle;
  atomic_store_explicit(&e->qpn, qpn, memory_order_release);

  pthread_mutex_init(&q->lock, NULL);
  q->cap = a->cap;
  q->sq_sig_all = a->sq_sig_all;
  q->dev = c->dev;
  q->slot = slot;
  q->peer_hint = -1;
  q->hw_state = IBV_QPS_RESET;
  q->qp.context = pd->context;
  q->qp.qp_context = a->qp_context;
  q->qp.pd = pd;
  q->qp.send_cq = a->send_cq;
  q->qp.recv_cq = a->recv_cq;
  q->qp.qp_num = qpn;
  q->qp.state = IBV_QPS_RESET;
  q->qp.qp_type = IBV_QPT_RC;
  pthread_mutex_init(&q->qp.mutex, NULL);
  pthread_cond_init(&q->qp.cond, NULL);
  return &q->qp; // a->cap already holds exactly what we grant
}

EXPORT int ibv_destroy_qp(struct ibv_qp *qp) {
  struct fake_qp *q = (struct fake_qp *)qp;
  pthread_mutex_lock(&q->lock); // wait out a post_send in flight
  struct fv_qp_ent *e = &fab->qps[q->slot];
  atomic_store(&e->qpn, 0); // peers' later WRs get RETRY_EXC_ERR
  atomic_store(&e->pid, 0);
  pthread_mutex_unlock(&q->lock);
  cq_clean((struct fake_cq *)qp->send_cq, q);
  if (qp->recv_cq != qp->send_cq) cq_clean((struct fake_cq *)qp->recv_cq, q);
  pthread_mutex_lock(&g_lock);
  ((struct fake_ctx *)qp->context)->nqp--;
  ((struct fake_pd *)qp->pd)->users--;
  ((struct fake_cq *)qp->send_cq)->users--;
  ((struct fake_cq *)qp->recv_cq)->users--;
  pthread_mutex_unlock(&g_lock);
  pthread_mutex_destroy(&q->lock);
  free(q);
  return 0;
}

// ib_modify_qp_is_ok for RC: the valid transitions with their required and optional masks.
static int transition_ok(enum ibv_qp_state cur, enum ibv_qp_state next, int mask) {
  int req, opt;
  if (next == IBV_QPS_RESET || next == IBV_QPS_ERR) req = 0, opt = 0;
  else if (cur == IBV_QPS_RESET && next == IBV_QPS_INIT)
    req = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, opt = 0;
  else if (cur == IBV_QPS_INIT && next == IBV_QPS_INIT)
    req = 0, opt = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
  else if (cur == IBV_QPS_INIT && next == IBV_QPS_RTR)
    req = IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
          IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
    opt = IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX;
  else if (cur == IBV_QPS_RTR && next == IBV_QPS_RTS)
    req = IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
          IBV_QP_MAX_QP_RD_ATOMIC,
    opt = IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER | IBV_QP_ALT_PATH |
          IBV_QP_PATH_MIG_STATE;
  else if (cur == IBV_QPS_RTS && next == IBV_QPS_RTS)
    req = 0, opt = IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_ALT_PATH |
                   IBV_QP_PATH_MIG_STATE | IBV_QP_MIN_RNR_TIMER;
  else return 0;
  return (mask & req) == req && (mask & ~(req | opt | IBV_QP_STATE)) == 0;
}

static int attr_values_ok(const struct fake_qp *q, const struct ibv_qp_attr *a, int mask) {
  if ((mask & IBV_QP_PORT) && a->port_num != 1) return 0;
  if ((mask & IBV_QP_PKEY_INDEX) && a->pkey_index != 0) return 0; // pkey_tbl_len 1
  if ((mask & IBV_QP_ACCESS_FLAGS) && (a->qp_access_flags & ~(unsigned)FV_QP_ACCESS)) return 0;
  if (mask & IBV_QP_AV) { // RoCE: every packet carries a GRH
    const struct ibv_ah_attr *ah = &a->ah_attr;
    if (!ah->is_global || ah->grh.sgid_index >= FV_GID_TBL_LEN || ah->port_num != 1) return 0;
  }
  if ((mask & IBV_QP_PATH_MTU) && (a->path_mtu < IBV_MTU_256 || a->path_mtu > IBV_MTU_4096)) return 0;
  if ((mask & IBV_QP_MAX_DEST_RD_ATOMIC) && a->max_dest_rd_atomic > FV_MAX_RD_ATOM) return 0;
  if ((mask & IBV_QP_MAX_QP_RD_ATOMIC) && a->max_rd_atomic > FV_MAX_RD_ATOM) return 0;
  if ((mask & IBV_QP_DEST_QPN) && a->dest_qp_num >= (1u << 24)) return 0;
  if ((mask & IBV_QP_CUR_STATE) && a->cur_qp_state != q->hw_state) return 0;
  return 1;
}

EXPORT int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *a, int mask) {
  struct fake_qp *q = (struct fake_qp *)qp;
  pthread_mutex_lock(&q->lock);
  enum ibv_qp_state cur = q->hw_state, next = (mask & IBV_QP_STATE) ? a->qp_state : cur;
  if (!transition_ok(cur, next, mask) || !attr_values_ok(q, a, mask)) {
    pthread_mutex_unlock(&q->lock);
    return fail_int(EINVAL);
  }
  struct fv_qp_ent *e = &fab->qps[q->slot];
  if (next == IBV_QPS_RESET) { // a reset QP forgets everything, its queued completions included
    memset(&q->attr, 0, sizeof q->attr);
    atomic_store(&q->outstanding, 0);
    q->unsignaled = 0;
    q->peer_hint = -1;
    atomic_store(&e->dest_qpn, 0);
    atomic_store(&e->access, 0);
    atomic_store(&e->dgid[0], 0);
    atomic_store(&e->dgid[1], 0);
    cq_clean((struct fake_cq *)qp->send_cq, q);
    if (qp->recv_cq != qp->send_cq) cq_clean((struct fake_cq *)qp->recv_cq, q);
  }
  if (mask & IBV_QP_PORT) q->attr.port_num = a->port_num;
  if (mask & IBV_QP_PKEY_INDEX) q->attr.pkey_index = a->pkey_index;
  if (mask & IBV_QP_ACCESS_FLAGS) {
    q->attr.qp_access_flags = a->qp_access_flags;
    atomic_store(&e->access, a->qp_access_flags);
  }
  if (mask & IBV_QP_AV) {
    q->attr.ah_attr = a->ah_attr;
    uint64_t g[2];
    memcpy(g, a->ah_attr.grh.dgid.raw, 16);
    atomic_store(&e->dgid[0], g[0]);
    atomic_store(&e->dgid[1], g[1]);
  }
  if (mask & IBV_QP_PATH_MTU) q->attr.path_mtu = a->path_mtu;
  if (mask & IBV_QP_DEST_QPN) {
    q->attr.dest_qp_num = a->dest_qp_num;
    atomic_store(&e->dest_qpn, a->dest_qp_num);
    q->peer_hint = -1;
  }
  if (mask & IBV_QP_RQ_PSN) q->attr.rq_psn = a->rq_psn;
  if (mask & IBV_QP_SQ_PSN) q->attr.sq_psn = a->sq_psn;
  if (mask & IBV_QP_MAX_DEST_RD_ATOMIC) q->attr.max_dest_rd_atomic = a->max_dest_rd_atomic;
  if (mask & IBV_QP_MAX_QP_RD_ATOMIC) q->attr.max_rd_atomic = a->max_rd_atomic;
  if (mask & IBV_QP_MIN_RNR_TIMER) q->attr.min_rnr_timer = a->min_rnr_timer;
  if (mask & IBV_QP_TIMEOUT) q->attr.timeout = a->timeout;
  if (mask & IBV_QP_RETRY_CNT) q->attr.retry_cnt = a->retry_cnt;
  if (mask & IBV_QP_RNR_RETRY) q->attr.rnr_retry = a->rnr_retry;
  q->hw_state = next;
  q->qp.state = next;
  atomic_store(&e->state, next);
  pthread_mutex_unlock(&q->lock);
  return 0;
}

// Not in IBVERBS_SYMBOLS, but the only way to see that the hardware moved a QP to ERR (libibverbs
// never updates qp->state on its own; ibv_query_qp does).
EXPORT int ibv_query_qp(struct ibv_qp *qp, struct ibv_qp_attr *a, int mask, struct ibv_qp_init_attr *init) {
  (void)mask;
  struct fake_qp *q = (struct fake_qp *)qp;
  pthread_mutex_lock(&q->lock);
  *a = q->attr;
  a->qp_state = a->cur_qp_state = q->hw_state;
  a->cap = q->cap;
  a->path_mig_state = IBV_MIG_MIGRATED;
  qp->state = q->hw_state;
  if (init) {
    memset(init, 0, sizeof *init);
    init->qp_context = qp->qp_context;
    init->send_cq = qp->send_cq;
    init->recv_cq = qp->recv_cq;
    init->cap = q->cap;
    init->qp_type = IBV_QPT_RC;
    init->sq_sig_all = q->sq_sig_all;
  }
  pthread_mutex_unlock(&q->lock);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The data path

static struct fv_qp_ent *find_qp(uint32_t qpn, int *hint) {
  if (qpn == 0) return NULL;
  if (*hint >= 0 && atomic_load_explicit(&fab->qps[*hint].qpn, memory_order_acquire) == qpn)
    return &fab->qps[*hint];
  for (int i = 0; i < FV_NQP; i++)
    if (atomic_load_explicit(&fab->qps[i].qpn, memory_order_acquire) == qpn) {
      *hint = i;
      return &fab->qps[i];
    }
  return NULL;
}

// Runs one RDMA WRITE / READ on an RTS QP. Returns the completion status; *lost = 1 when the
// lose_completion knob fired. Nothing is moved unless every check passed.
static enum ibv_wc_status execute(struct fake_qp *q, struct ibv_send_wr *wr, uint64_t total, int *lost) {
  int rd = wr->opcode == IBV_WR_RDMA_READ;
  int32_t me = getpid();
  if (link_down(q->dev)) return IBV_WC_RETRY_EXC_ERR;

  struct iovec local[FV_MAX_SGE];
  for (int i = 0; i < wr->num_sge; i++) {
    const struct ibv_sge *s = &wr->sg_list[i];
    struct fv_mr_ent *m = find_mr(s->lkey, 1);
    if (!m || atomic_load(&m->pid) != me || m->pd_id != q->qp.pd->handle ||
        !in_range(s->addr, s->length, m->iova, m->length) ||
        (rd && !(m->access & IBV_ACCESS_LOCAL_WRITE)))
      return IBV_WC_LOC_PROT_ERR;
    local[i].iov_base = (void *)(uintptr_t)(m->where + (s->addr - m->iova));
    local[i].iov_len = s->length;
  }

  // The responder: gone, dead, not ready, not paired with us, unreachable or addressed with a
  // GID it does not own all look the same from here: no ACK, retries exhausted.
  struct fv_qp_ent *r = find_qp(q->attr.dest_qp_num, &q->peer_hint);
  if (!r) return IBV_WC_RETRY_EXC_ERR;
  int32_t rpid = atomic_load(&r->pid);
  uint32_t rstate = atomic_load(&r->state);
  uint64_t rg[2] = {atomic_load(&r->dgid[0]), atomic_load(&r->dgid[1])};
  uint32_t rdev = r->dev;
  if (!pid_alive(rpid) || (rstate != IBV_QPS_RTR && rstate != IBV_QPS_RTS) ||
      atomic_load(&r->dest_qpn) != q->qp.qp_num || atomic_load(&r->env_down) ||
      rdev >= FV_MAX_DEV || link_file_down((int)rdev) ||
      !dev_has_gid((int)rdev, q->attr.ah_attr.grh.dgid.raw) || !dev_has_gid(q->dev, (uint8_t *)rg))
    return IBV_WC_RETRY_EXC_ERR;

  int need = rd ? IBV_ACCESS_REMOTE_READ : IBV_ACCESS_REMOTE_WRITE;
  struct fv_mr_ent *rm = find_mr(wr->wr.rdma.rkey, 0);
  if (!rm || atomic_load(&rm->pid) != rpid || rm->pd_id != r->pd_id ||
      !in_range(wr->wr.rdma.remote_addr, total, rm->iova, rm->length) || !(rm->access & need) ||
      !(atomic_load(&r->access) & (unsigned)need))
    return IBV_WC_REM_ACCESS_ERR;

  if (take_oneshot("qp_error")) return IBV_WC_RETRY_EXC_ERR;

  char *remote = (char *)(uintptr_t)(rm->where + (wr->wr.rdma.remote_addr - rm->iova));
  if (rpid == me) {
    for (int i = 0; i < wr->num_sge; remote += local[i].iov_len, i++)
      if (rd) memmove(local[i].iov_base, remote, local[i].iov_len);
      else memmove(remote, local[i].iov_base, local[i].iov_len);
  } else if (total > 0) {
    struct iovec rv = {remote, (size_t)total};
    ssize_t n = rd ? process_vm_readv(rpid, local, (unsigned long)wr->num_sge, &rv, 1, 0)
                   : process_vm_writev(rpid, local, (unsigned long)wr->num_sge, &rv, 1, 0);
    if (n != (ssize_t)total) {
      int e = n < 0 ? errno : EFAULT;
      if (e == ESRCH) return IBV_WC_RETRY_EXC_ERR;
      if (e == EPERM && !atomic_exchange(&eperm_warned, 1))
        fprintf(stderr, "fakeverbs: process_vm_%sv(%d): EPERM (ptrace rules?)\n", rd ? "read" : "write", rpid);
      return IBV_WC_REM_ACCESS_ERR;
    }
  }
  if (take_oneshot("lose_completion")) *lost = 1;
  return IBV_WC_SUCCESS;
}

static int fv_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad) {
  struct fake_qp *q = (struct fake_qp *)qp;
  struct fake_cq *cq = (struct fake_cq *)qp->send_cq;
  struct fv_stat *st = &fab->stats[q->dev];
  int rc = 0;
  pthread_mutex_lock(&q->lock);
  for (; wr; wr = wr->next) {
    enum ibv_qp_state s = q->hw_state;
    if (s != IBV_QPS_RTS && s != IBV_QPS_ERR) { rc = EINVAL; break; }
    if ((wr->opcode != IBV_WR_RDMA_WRITE && wr->opcode != IBV_WR_RDMA_READ) || wr->num_sge < 1 ||
        wr->num_sge > (int)q->cap.max_send_sge || !wr->sg_list) { rc = EINVAL; break; }
    if (atomic_load(&q->outstanding) >= (int)q->cap.max_send_wr) { rc = ENOMEM; break; }
    if (!cq_reserve(cq)) {
      if (!atomic_exchange(&overflow_warned, 1)) fprintf(stderr, "fakeverbs: CQ overflow\n");
      rc = ENOMEM;
      break;
    }
    atomic_fetch_add(&q->outstanding, 1);
    uint64_t total = 0;
    for (int i = 0; i < wr->num_sge; i++) total += wr->sg_list[i].length;

    int lost = 0;
    enum ibv_wc_status status;
    if (s == IBV_QPS_ERR) status = IBV_WC_WR_FLUSH_ERR; // a QP in error flushes everything
    else if (total > FV_MAX_MSG_SZ) status = IBV_WC_LOC_LEN_ERR;
    else {
      if (wr_delay_us > 0) {
        struct timespec ts = {wr_delay_us / 1000000, (wr_delay_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
      }
      status = execute(q, wr, total, &lost);
    }
    if (status == IBV_WC_SUCCESS) {
      atomic_fetch_add(&st->wrs, 1);
      atomic_fetch_add(&st->bytes, total);
    } else {
      atomic_fetch_add(&st->errors, 1);
      if (s != IBV_QPS_ERR) { q->hw_state = IBV_QPS_ERR; atomic_store(&fab->qps[q->slot].state, IBV_QPS_ERR); }
    }
    // Errors always complete; a lost completion frees its slot with the next one, like an
    // unsignaled WR (a later CQE implies the earlier WRs are done).
    if (!lost && (status != IBV_WC_SUCCESS || (wr->send_flags & IBV_SEND_SIGNALED) || q->sq_sig_all)) {
      struct cqe e = {.qp = q, .freed = q->unsignaled + 1};
      q->unsignaled = 0;
      e.wc.wr_id = wr->wr_id;
      e.wc.status = status;
      e.wc.opcode = wr->opcode == IBV_WR_RDMA_READ ? IBV_WC_RDMA_READ : IBV_WC_RDMA_WRITE;
      e.wc.byte_len = (uint32_t)total;
      e.wc.qp_num = qp->qp_num;
      cq_complete(cq, &e);
    } else {
      q->unsignaled++;
      cq_complete(cq, NULL);
    }
  }
  pthread_mutex_unlock(&q->lock);
  if (rc) { *bad = wr; errno = rc; }
  return rc;
}

// One-sided only: receive WRs are accepted once the QP is past RESET and never complete (nothing
// ever sends to them). Kept so the slot is a real function.
static int fv_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad) {
  struct fake_qp *q = (struct fake_qp *)qp;
  pthread_mutex_lock(&q->lock);
  int rc = 0;
  for (; wr; wr = wr->next)
    if (q->hw_state == IBV_QPS_RESET || wr->num_sge < 0 || wr->num_sge > (int)q->cap.max_recv_sge) {
      rc = EINVAL;
      break;
    }
  pthread_mutex_unlock(&q->lock);
  if (rc) { *bad = wr; errno = rc; }
  return rc;
}
