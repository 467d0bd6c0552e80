// The libibverbs ABI as data: the exported functions we bind, the four inline verbs reached through
// `ibv_context.ops`, the struct layouts we read and write, and the enum values we use. Runtime-
// neutral: no bun:ffi here, so Deno.dlopen or koffi could load the same tables; ffi/ibverbs.ts
// loads them with bun:ffi.
//
// LP64 Linux only (rdma-core 44, verbs.h). x86-64 and aarch64 lay these structs out the same way
// (natural alignment, 8-byte pointers and size_t, 4-byte enums and ints); the loader refuses any
// other platform. tests/abi/ibverbs-layout.test.ts compiles a C program against the installed
// <infiniband/verbs.h> and compares every offset, size and value below with it.

/**
 * The exported functions we bind (the default `@@IBVERBS_1.1` versions, or 1.8 / 1.12 where noted,
 * which is what dlsym returns). Plain type names, as bun:ffi, Deno.dlopen and koffi spell them:
 * "ptr" for every pointer, size_t = u64, uint8_t port numbers = u8, enums = i32.
 *
 * What is NOT here, because verbs.h makes it static inline or a macro (transfer-engine spec §4.8):
 * ibv_post_send / ibv_post_recv / ibv_poll_cq / ibv_req_notify_cq (see IBV_CONTEXT_OPS), ibv_reg_mr
 * (a macro: call ibv_reg_mr_iova2 with iova = addr), and ibv_query_port (a macro over
 * `___ibv_query_port`; the exported compat ibv_query_port below takes a zeroed buffer of
 * IBV_LAYOUTS.ibv_port_attr.sizeBytes).
 */
export const IBVERBS_SYMBOLS = {
  /** (int *num_devices) -> struct ibv_device ** (NULL-terminated; NULL + errno on failure) */
  ibv_get_device_list: { args: ["ptr"], returns: "ptr" },
  ibv_free_device_list: { args: ["ptr"], returns: "void" },
  ibv_get_device_name: { args: ["ptr"], returns: "cstring" },
  /** (struct ibv_device *) -> struct ibv_context * (NULL + errno) */
  ibv_open_device: { args: ["ptr"], returns: "ptr" },
  ibv_close_device: { args: ["ptr"], returns: "i32" },
  /** (ctx, struct ibv_device_attr *) -> 0 or errno */
  ibv_query_device: { args: ["ptr", "ptr"], returns: "i32" },
  /** The compat export: (ctx, uint8_t port, struct ibv_port_attr *) -> 0 or errno. */
  ibv_query_port: { args: ["ptr", "u8", "ptr"], returns: "i32" },
  /** (ctx, uint8_t port, int index, union ibv_gid *) -> 0 or -1 */
  ibv_query_gid: { args: ["ptr", "u8", "i32", "ptr"], returns: "i32" },
  ibv_alloc_pd: { args: ["ptr"], returns: "ptr" },
  ibv_dealloc_pd: { args: ["ptr"], returns: "i32" },
  /** IBVERBS_1.8: (pd, void *addr, size_t length, uint64_t iova, unsigned access) -> struct ibv_mr * */
  ibv_reg_mr_iova2: { args: ["ptr", "ptr", "u64", "u64", "u32"], returns: "ptr" },
  /** IBVERBS_1.12: (pd, uint64_t offset, size_t length, uint64_t iova, int fd, int access) -> struct ibv_mr * */
  ibv_reg_dmabuf_mr: { args: ["ptr", "u64", "u64", "u64", "i32", "i32"], returns: "ptr" },
  ibv_dereg_mr: { args: ["ptr"], returns: "i32" },
  ibv_create_comp_channel: { args: ["ptr"], returns: "ptr" },
  ibv_destroy_comp_channel: { args: ["ptr"], returns: "i32" },
  /** (ctx, int cqe, void *cq_context, struct ibv_comp_channel *, int comp_vector) -> struct ibv_cq * */
  ibv_create_cq: { args: ["ptr", "i32", "ptr", "ptr", "i32"], returns: "ptr" },
  ibv_destroy_cq: { args: ["ptr"], returns: "i32" },
  /** (pd, struct ibv_qp_init_attr *) -> struct ibv_qp * (the attr's cap is written back) */
  ibv_create_qp: { args: ["ptr", "ptr"], returns: "ptr" },
  /** (qp, struct ibv_qp_attr *, int attr_mask) -> 0 or errno */
  ibv_modify_qp: { args: ["ptr", "ptr", "i32"], returns: "i32" },
  ibv_destroy_qp: { args: ["ptr"], returns: "i32" },
  /** (channel, struct ibv_cq **cq, void **cq_context) -> 0 or -1 */
  ibv_get_cq_event: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
  ibv_ack_cq_events: { args: ["ptr", "u32"], returns: "void" },
  ibv_wc_status_str: { args: ["i32"], returns: "cstring" },
  /** Marks registered memory MADV_DONTFORK so a fork cannot break it; once, before the first MR. */
  ibv_fork_init: { args: [], returns: "i32" },
} as const;

/** One field: its byte offset from the start of the outermost struct, and its size. */
export interface FieldLayout {
  readonly offset: number;
  readonly sizeBytes: number;
}

/**
 * A struct (or union) layout: `cType` is its C spelling, `fields` are keyed by their C member
 * designator (`ah_attr.grh.dgid`, `wr.rdma.rkey`, `ops.post_send`), so `offsetof(cType, key)` is
 * the offset. Only the fields we touch are listed; sizeBytes is the whole struct's size.
 */
export interface StructLayout {
  readonly cType: string;
  readonly sizeBytes: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

const f = (offset: number, sizeBytes: number): FieldLayout => ({ offset, sizeBytes });

export const IBV_LAYOUTS = {
  ibv_device_attr: {
    cType: "struct ibv_device_attr",
    sizeBytes: 232,
    fields: {
      fw_ver: f(0, 64),
      node_guid: f(64, 8),
      max_mr_size: f(80, 8),
      max_qp: f(108, 4),
      max_qp_wr: f(112, 4),
      max_sge: f(120, 4),
      max_cq: f(128, 4),
      max_cqe: f(132, 4),
      max_mr: f(136, 4),
      max_pd: f(140, 4),
      max_qp_rd_atom: f(144, 4),
      max_qp_init_rd_atom: f(156, 4),
      phys_port_cnt: f(227, 1),
    },
  },
  ibv_port_attr: {
    cType: "struct ibv_port_attr",
    sizeBytes: 52,
    fields: {
      state: f(0, 4),
      max_mtu: f(4, 4),
      active_mtu: f(8, 4),
      gid_tbl_len: f(12, 4),
      lid: f(34, 2),
      active_width: f(43, 1),
      active_speed: f(44, 1),
      link_layer: f(46, 1),
    },
  },
  ibv_gid: {
    cType: "union ibv_gid",
    sizeBytes: 16,
    fields: {
      raw: f(0, 16),
      "global.subnet_prefix": f(0, 8),
      "global.interface_id": f(8, 8),
    },
  },
  ibv_context: {
    cType: "struct ibv_context",
    sizeBytes: 328,
    fields: {
      device: f(0, 8),
      ops: f(8, 256),
      "ops.poll_cq": f(96, 8),
      "ops.req_notify_cq": f(104, 8),
      "ops.post_send": f(208, 8),
      "ops.post_recv": f(216, 8),
      cmd_fd: f(264, 4),
      async_fd: f(268, 4),
      num_comp_vectors: f(272, 4),
    },
  },
  ibv_comp_channel: {
    cType: "struct ibv_comp_channel",
    sizeBytes: 16,
    fields: { context: f(0, 8), fd: f(8, 4) },
  },
  ibv_mr: {
    cType: "struct ibv_mr",
    sizeBytes: 48,
    fields: {
      context: f(0, 8),
      pd: f(8, 8),
      addr: f(16, 8),
      length: f(24, 8),
      handle: f(32, 4),
      lkey: f(36, 4),
      rkey: f(40, 4),
    },
  },
  ibv_cq: {
    cType: "struct ibv_cq",
    sizeBytes: 128,
    fields: { context: f(0, 8), channel: f(8, 8), cq_context: f(16, 8), cqe: f(28, 4) },
  },
  ibv_qp: {
    cType: "struct ibv_qp",
    sizeBytes: 160,
    fields: { context: f(0, 8), qp_context: f(8, 8), qp_num: f(52, 4), state: f(56, 4), qp_type: f(60, 4) },
  },
  ibv_qp_init_attr: {
    cType: "struct ibv_qp_init_attr",
    sizeBytes: 64,
    fields: {
      qp_context: f(0, 8),
      send_cq: f(8, 8),
      recv_cq: f(16, 8),
      srq: f(24, 8),
      "cap.max_send_wr": f(32, 4),
      "cap.max_recv_wr": f(36, 4),
      "cap.max_send_sge": f(40, 4),
      "cap.max_recv_sge": f(44, 4),
      "cap.max_inline_data": f(48, 4),
      qp_type: f(52, 4),
      sq_sig_all: f(56, 4),
    },
  },
  ibv_qp_attr: {
    cType: "struct ibv_qp_attr",
    sizeBytes: 144,
    fields: {
      qp_state: f(0, 4),
      path_mtu: f(8, 4),
      rq_psn: f(20, 4),
      sq_psn: f(24, 4),
      dest_qp_num: f(28, 4),
      qp_access_flags: f(32, 4),
      ah_attr: f(56, 32),
      "ah_attr.grh.dgid": f(56, 16),
      "ah_attr.grh.flow_label": f(72, 4),
      "ah_attr.grh.sgid_index": f(76, 1),
      "ah_attr.grh.hop_limit": f(77, 1),
      "ah_attr.grh.traffic_class": f(78, 1),
      "ah_attr.dlid": f(80, 2),
      "ah_attr.sl": f(82, 1),
      "ah_attr.src_path_bits": f(83, 1),
      "ah_attr.static_rate": f(84, 1),
      "ah_attr.is_global": f(85, 1),
      "ah_attr.port_num": f(86, 1),
      pkey_index: f(120, 2),
      max_rd_atomic: f(126, 1),
      max_dest_rd_atomic: f(127, 1),
      min_rnr_timer: f(128, 1),
      port_num: f(129, 1),
      timeout: f(130, 1),
      retry_cnt: f(131, 1),
      rnr_retry: f(132, 1),
    },
  },
  ibv_sge: {
    cType: "struct ibv_sge",
    sizeBytes: 16,
    fields: { addr: f(0, 8), length: f(8, 4), lkey: f(12, 4) },
  },
  ibv_send_wr: {
    cType: "struct ibv_send_wr",
    sizeBytes: 128,
    fields: {
      wr_id: f(0, 8),
      next: f(8, 8),
      sg_list: f(16, 8),
      num_sge: f(24, 4),
      opcode: f(28, 4),
      send_flags: f(32, 4),
      imm_data: f(36, 4),
      "wr.rdma.remote_addr": f(40, 8),
      "wr.rdma.rkey": f(48, 4),
    },
  },
  ibv_recv_wr: {
    cType: "struct ibv_recv_wr",
    sizeBytes: 32,
    fields: { wr_id: f(0, 8), next: f(8, 8), sg_list: f(16, 8), num_sge: f(24, 4) },
  },
  ibv_wc: {
    cType: "struct ibv_wc",
    sizeBytes: 48,
    fields: {
      wr_id: f(0, 8),
      status: f(8, 4),
      opcode: f(12, 4),
      vendor_err: f(16, 4),
      byte_len: f(20, 4),
      qp_num: f(28, 4),
      wc_flags: f(36, 4),
    },
  },
} as const satisfies Record<string, StructLayout>;

/**
 * The inline verbs: verbs.h implements them as `ctx->ops.<slot>(...)`, so we read the function
 * pointer at `ctx + offset` (ctx = `cq->context` or `qp->context`, both at offset 0) and call it
 * with these types (bun:ffi: `CFunction({ ptr, args, returns })`, once per context). Providers
 * (mlx5, rxe, …) always fill these legacy slots.
 */
export const IBV_CONTEXT_OPS = {
  /** (struct ibv_qp *, struct ibv_send_wr *, struct ibv_send_wr **bad_wr) -> 0 or errno */
  post_send: { offset: IBV_LAYOUTS.ibv_context.fields["ops.post_send"].offset, args: ["ptr", "ptr", "ptr"], returns: "i32" },
  /** (struct ibv_qp *, struct ibv_recv_wr *, struct ibv_recv_wr **bad_wr) -> 0 or errno */
  post_recv: { offset: IBV_LAYOUTS.ibv_context.fields["ops.post_recv"].offset, args: ["ptr", "ptr", "ptr"], returns: "i32" },
  /** (struct ibv_cq *, int num_entries, struct ibv_wc *) -> completions polled (≥ 0) or < 0 */
  poll_cq: { offset: IBV_LAYOUTS.ibv_context.fields["ops.poll_cq"].offset, args: ["ptr", "i32", "ptr"], returns: "i32" },
  /** (struct ibv_cq *, int solicited_only) -> 0 or errno */
  req_notify_cq: { offset: IBV_LAYOUTS.ibv_context.fields["ops.req_notify_cq"].offset, args: ["ptr", "i32"], returns: "i32" },
} as const;

// Enum values (rdma-core 44). Each group's C names are its prefix + key: IBV_ACCESS_LOCAL_WRITE.

export const IBV_ACCESS = {
  LOCAL_WRITE: 1,
  REMOTE_WRITE: 2,
  REMOTE_READ: 4,
  REMOTE_ATOMIC: 8,
  /** IBV_ACCESS_OPTIONAL_FIRST: an optional flag, so only ibv_reg_mr_iova2 takes it (spec §4.3). */
  RELAXED_ORDERING: 0x100000,
  /** The optional flags' range: a device may ignore them, ibv_reg_mr routes them to ibv_reg_mr_iova2. */
  OPTIONAL_RANGE: 0x3ff00000,
} as const;

export const IBV_QPS = { RESET: 0, INIT: 1, RTR: 2, RTS: 3, SQD: 4, SQE: 5, ERR: 6, UNKNOWN: 7 } as const;

export const IBV_QPT = { RC: 2 } as const;

export const IBV_WR = { RDMA_WRITE: 0, RDMA_WRITE_WITH_IMM: 1, SEND: 2, SEND_WITH_IMM: 3, RDMA_READ: 4 } as const;

export const IBV_SEND = { FENCE: 1, SIGNALED: 2, SOLICITED: 4, INLINE: 8 } as const;

/** enum ibv_wc_status: every code, in order (ibv_wc_status_str names them at runtime). */
export const IBV_WC_STATUS = {
  SUCCESS: 0,
  LOC_LEN_ERR: 1,
  LOC_QP_OP_ERR: 2,
  LOC_EEC_OP_ERR: 3,
  LOC_PROT_ERR: 4,
  WR_FLUSH_ERR: 5,
  MW_BIND_ERR: 6,
  BAD_RESP_ERR: 7,
  LOC_ACCESS_ERR: 8,
  REM_INV_REQ_ERR: 9,
  REM_ACCESS_ERR: 10,
  REM_OP_ERR: 11,
  RETRY_EXC_ERR: 12,
  RNR_RETRY_EXC_ERR: 13,
  LOC_RDD_VIOL_ERR: 14,
  REM_INV_RD_REQ_ERR: 15,
  REM_ABORT_ERR: 16,
  INV_EECN_ERR: 17,
  INV_EEC_STATE_ERR: 18,
  FATAL_ERR: 19,
  RESP_TIMEOUT_ERR: 20,
  GENERAL_ERR: 21,
  TM_ERR: 22,
  TM_RNDV_INCOMPLETE: 23,
} as const;

/** enum ibv_wc_opcode (the completion's opcode; note it differs from IBV_WR). */
export const IBV_WC_OPCODE = { SEND: 0, RDMA_WRITE: 1, RDMA_READ: 2, RECV: 128 } as const;

export const IBV_MTU = { MTU_256: 1, MTU_512: 2, MTU_1024: 3, MTU_2048: 4, MTU_4096: 5 } as const;

/** enum ibv_qp_attr_mask: which ibv_qp_attr fields ibv_modify_qp reads. */
export const IBV_QP = {
  STATE: 1 << 0,
  CUR_STATE: 1 << 1,
  ACCESS_FLAGS: 1 << 3,
  PKEY_INDEX: 1 << 4,
  PORT: 1 << 5,
  QKEY: 1 << 6,
  AV: 1 << 7,
  PATH_MTU: 1 << 8,
  TIMEOUT: 1 << 9,
  RETRY_CNT: 1 << 10,
  RNR_RETRY: 1 << 11,
  RQ_PSN: 1 << 12,
  MAX_QP_RD_ATOMIC: 1 << 13,
  MIN_RNR_TIMER: 1 << 15,
  SQ_PSN: 1 << 16,
  MAX_DEST_RD_ATOMIC: 1 << 17,
  CAP: 1 << 19,
  DEST_QPN: 1 << 20,
} as const;

export const IBV_PORT = { NOP: 0, DOWN: 1, INIT: 2, ARMED: 3, ACTIVE: 4, ACTIVE_DEFER: 5 } as const;

export const IBV_LINK_LAYER = { UNSPECIFIED: 0, INFINIBAND: 1, ETHERNET: 2 } as const;

/**
 * Every enum group with its C prefix (IBV_MTU's keys already carry "MTU_"), for the layout test:
 * the C name of `IBV_QP.STATE` is "IBV_QP_" + "STATE".
 */
export const IBV_ENUMS: readonly { readonly prefix: string; readonly values: Readonly<Record<string, number>> }[] = [
  { prefix: "IBV_ACCESS_", values: IBV_ACCESS },
  { prefix: "IBV_QPS_", values: IBV_QPS },
  { prefix: "IBV_QPT_", values: IBV_QPT },
  { prefix: "IBV_WR_", values: IBV_WR },
  { prefix: "IBV_SEND_", values: IBV_SEND },
  { prefix: "IBV_WC_", values: IBV_WC_STATUS },
  { prefix: "IBV_WC_", values: IBV_WC_OPCODE },
  { prefix: "IBV_", values: IBV_MTU },
  { prefix: "IBV_QP_", values: IBV_QP },
  { prefix: "IBV_PORT_", values: IBV_PORT },
  { prefix: "IBV_LINK_LAYER_", values: IBV_LINK_LAYER },
];
