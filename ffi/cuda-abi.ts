// The CUDA driver API (libcuda) as data: the exported functions we bind, under the names the driver
// really exports, and the enum values we use. Runtime-neutral: no bun:ffi here, so Deno.dlopen or
// koffi could load the same table; ffi/cuda.ts loads it with bun:ffi.
//
// LP64 Linux only (x86-64 / aarch64): size_t and CUdeviceptr (unsigned long long) are 8 bytes,
// CUdevice and CUresult are 4-byte ints, CUcontext is a pointer. ffi/cuda.test.ts compiles a C
// program against the toolkit's cuda.h that prints every value below, checks that each symbol name
// is what cuda.h maps its API name to, and calls each one with these argument kinds under -Werror.

/**
 * The exported functions we bind. cuda.h `#define`s several API names to versioned symbols
 * (`cuMemAlloc` -> `cuMemAlloc_v2`, …); dlsym needs the versioned name, so that is the key here.
 * The unversioned `cuMemAlloc` symbol still exists in the driver but is the CUDA 3.1 ABI with
 * 32-bit sizes: binding it would silently truncate.
 *
 * Plain type names, as bun:ffi, Deno.dlopen and koffi spell them: "ptr" for every pointer
 * (out-parameters included), "u64" for CUdeviceptr, size_t and unsigned long long, "i32" for int,
 * CUdevice and the enums (CUresult, CUdevice_attribute, CUpointer_attribute,
 * CUmemRangeHandleType), "u32" for unsigned int flags. Every function returns a CUresult.
 */
export const CUDA_SYMBOLS = {
  /** (unsigned int Flags) — Flags must be 0. */
  cuInit: { args: ["u32"], returns: "i32" },
  /** (int *driverVersion) — 1000 * major + 10 * minor; works before cuInit. */
  cuDriverGetVersion: { args: ["ptr"], returns: "i32" },
  /** (int *count) */
  cuDeviceGetCount: { args: ["ptr"], returns: "i32" },
  /** (CUdevice *device, int ordinal) */
  cuDeviceGet: { args: ["ptr", "i32"], returns: "i32" },
  /** (char *name, int len, CUdevice dev) */
  cuDeviceGetName: { args: ["ptr", "i32", "i32"], returns: "i32" },
  /** (int *pi, CUdevice_attribute attrib, CUdevice dev) */
  cuDeviceGetAttribute: { args: ["ptr", "i32", "i32"], returns: "i32" },
  /** (char *pciBusId, int len, CUdevice dev) — "dddd:bb:dd.f", 13 bytes with the NUL. */
  cuDeviceGetPCIBusId: { args: ["ptr", "i32", "i32"], returns: "i32" },
  /** (CUcontext *pctx, CUdevice dev) */
  cuDevicePrimaryCtxRetain: { args: ["ptr", "i32"], returns: "i32" },
  /** (CUdevice dev) */
  cuDevicePrimaryCtxRelease_v2: { args: ["i32"], returns: "i32" },
  /** (CUcontext ctx) — NULL unbinds the calling thread's context. */
  cuCtxSetCurrent: { args: ["ptr"], returns: "i32" },
  /** (CUcontext *pctx) — NULL when none is current on the calling thread. */
  cuCtxGetCurrent: { args: ["ptr"], returns: "i32" },
  /** (void *data, CUpointer_attribute attribute, CUdeviceptr ptr) — data's type depends on the attribute. */
  cuPointerGetAttribute: { args: ["ptr", "i32", "u64"], returns: "i32" },
  /** (CUdeviceptr *dptr, size_t bytesize) */
  cuMemAlloc_v2: { args: ["ptr", "u64"], returns: "i32" },
  /** (CUdeviceptr dptr) */
  cuMemFree_v2: { args: ["u64"], returns: "i32" },
  /** (CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr) — either out-parameter may be NULL. */
  cuMemGetAddressRange_v2: { args: ["ptr", "ptr", "u64"], returns: "i32" },
  /** (CUdeviceptr dst, CUdeviceptr src, size_t ByteCount) — unified addressing: host or device on either side. */
  cuMemcpy: { args: ["u64", "u64", "u64"], returns: "i32" },
  /** (CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount) */
  cuMemcpyHtoD_v2: { args: ["u64", "ptr", "u64"], returns: "i32" },
  /** (void *dstHost, CUdeviceptr srcDevice, size_t ByteCount) */
  cuMemcpyDtoH_v2: { args: ["ptr", "u64", "u64"], returns: "i32" },
  /** (void *p, size_t bytesize, unsigned int Flags) — CU_MEMHOSTREGISTER.* */
  cuMemHostRegister_v2: { args: ["ptr", "u64", "u32"], returns: "i32" },
  /** (void *p) — the address given to cuMemHostRegister. */
  cuMemHostUnregister: { args: ["ptr"], returns: "i32" },
  /**
   * CUDA ≥ 11.7: (void *handle, CUdeviceptr dptr, size_t size, CUmemRangeHandleType handleType,
   * unsigned long long flags) — for DMA_BUF_FD, handle is an int * that receives the fd.
   */
  cuMemGetHandleForAddressRange: { args: ["ptr", "u64", "u64", "i32", "u64"], returns: "i32" },
  /** (CUresult error, const char **pStr) — "CUDA_ERROR_…"; works before cuInit. */
  cuGetErrorName: { args: ["i32", "ptr"], returns: "i32" },
  /** (CUresult error, const char **pStr) — the description; works before cuInit. */
  cuGetErrorString: { args: ["i32", "ptr"], returns: "i32" },
} as const;

export const CUDA_SUCCESS = 0;

/** CUresult codes we name (the C name is "CUDA_ERROR_" + key); cuGetErrorName names any code at runtime. */
export const CUDA_ERROR = {
  INVALID_VALUE: 1,
  OUT_OF_MEMORY: 2,
  NOT_INITIALIZED: 3,
  DEINITIALIZED: 4,
  /** The toolkit's link-time stub (lib64/stubs/libcuda.so) was loaded instead of the driver. */
  STUB_LIBRARY: 34,
  DEVICE_UNAVAILABLE: 46,
  NO_DEVICE: 100,
  INVALID_DEVICE: 101,
  INVALID_CONTEXT: 201,
  INVALID_HANDLE: 400,
  NOT_FOUND: 500,
  HOST_MEMORY_ALREADY_REGISTERED: 712,
  HOST_MEMORY_NOT_REGISTERED: 713,
  NOT_PERMITTED: 800,
  NOT_SUPPORTED: 801,
  SYSTEM_DRIVER_MISMATCH: 803,
  COMPAT_NOT_SUPPORTED_ON_DEVICE: 804,
  UNKNOWN: 999,
} as const;

/** CUpointer_attribute values we query. */
export const CU_POINTER_ATTRIBUTE = {
  /** CUcontext * */
  CONTEXT: 1,
  /** unsigned int * receiving a CU_MEMORYTYPE value */
  MEMORY_TYPE: 2,
  /** int * */
  DEVICE_ORDINAL: 9,
} as const;

/** CUmemorytype */
export const CU_MEMORYTYPE = { HOST: 1, DEVICE: 2, ARRAY: 3, UNIFIED: 4 } as const;

/** CUdevice_attribute values we query. */
export const CU_DEVICE_ATTRIBUTE = {
  PCI_BUS_ID: 33,
  PCI_DEVICE_ID: 34,
  UNIFIED_ADDRESSING: 41,
  PCI_DOMAIN_ID: 50,
  GPU_DIRECT_RDMA_SUPPORTED: 116,
  /** 1 when cuMemGetHandleForAddressRange can export a dma-buf (open kernel modules, Linux ≥ 5.12). */
  DMA_BUF_SUPPORTED: 124,
} as const;

/** CUmemRangeHandleType */
export const CU_MEM_RANGE_HANDLE_TYPE = { DMA_BUF_FD: 1 } as const;

/** CUmemRangeFlags: cuMemGetHandleForAddressRange's flags (Mooncake passes 0: B200 rejects PCIE). */
export const CU_MEM_RANGE_FLAG = { DMA_BUF_MAPPING_TYPE_PCIE: 1 } as const;

/** cuMemHostRegister flags (#defines in cuda.h). */
export const CU_MEMHOSTREGISTER = { PORTABLE: 0x01, DEVICEMAP: 0x02, IOMEMORY: 0x04, READ_ONLY: 0x08 } as const;

/**
 * Every constant group with its C prefix, for the ABI test: the C name of
 * `CU_POINTER_ATTRIBUTE.MEMORY_TYPE` is "CU_POINTER_ATTRIBUTE_" + "MEMORY_TYPE".
 */
export const CUDA_ENUMS: readonly { readonly prefix: string; readonly values: Readonly<Record<string, number>> }[] = [
  { prefix: "CUDA_", values: { SUCCESS: CUDA_SUCCESS } },
  { prefix: "CUDA_ERROR_", values: CUDA_ERROR },
  { prefix: "CU_POINTER_ATTRIBUTE_", values: CU_POINTER_ATTRIBUTE },
  { prefix: "CU_MEMORYTYPE_", values: CU_MEMORYTYPE },
  { prefix: "CU_DEVICE_ATTRIBUTE_", values: CU_DEVICE_ATTRIBUTE },
  { prefix: "CU_MEM_RANGE_HANDLE_TYPE_", values: CU_MEM_RANGE_HANDLE_TYPE },
  { prefix: "CU_MEM_RANGE_FLAG_", values: CU_MEM_RANGE_FLAG },
  { prefix: "CU_MEMHOSTREGISTER_", values: CU_MEMHOSTREGISTER },
];

/** The cuda.h API name a bound symbol implements: `cuMemAlloc_v2` -> `cuMemAlloc`. */
export function cudaApiName(symbol: keyof typeof CUDA_SYMBOLS): string {
  return symbol.replace(/_v\d+$/, "");
}
