// A fake libcuda (CUDA driver API) for tests on machines with no GPU: the functions ffi/cuda-abi.ts
// binds, compiled against the toolkit's real cuda.h so every prototype and exported name is the
// driver's own (cuda.h's `#define cuMemAlloc cuMemAlloc_v2` makes the definition of cuMemAlloc
// below export cuMemAlloc_v2). Built by tests/fakes/build.ts as libfakecuda.so and loaded with
// MOONCAKE_LIBCUDA=<its absolute path>.
//
// "Device memory" is one memfd per cuMemAlloc, mapped twice: a PROT_NONE view whose address is the
// CUdeviceptr (a CPU dereference of device memory segfaults, as with real VRAM) and a read-write
// shadow only this library touches, through which the cuMemcpy* functions copy. The dma-buf
// exported by cuMemGetHandleForAddressRange is a dup of the memfd, offset 0 = the allocation's base:
// a contract with the fake libibverbs, whose ibv_reg_dmabuf_mr mmaps that fd MAP_SHARED at the
// registration's offset, so the "NIC" reaches the GPU's bytes with no host copy.
//
// Rules enforced as the real driver does: NOT_INITIALIZED before cuInit(0) (except cuGetErrorName,
// cuGetErrorString and cuDriverGetVersion, which the driver also answers before cuInit); device
// ordinals checked; a current context on the calling thread for allocation, copies, host
// registration, address ranges and export; ranges checked against the allocation table.
//
// Environment (read once, by the first successful cuInit):
//   FAKECUDA_DEVICES=<n>  device count, 0..16 (default 1; 0 -> cuInit returns CUDA_ERROR_NO_DEVICE)
//   FAKECUDA_DMABUF=0     CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED is 0 and export fails (NOT_SUPPORTED)

#define _GNU_SOURCE
#include <cuda.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_DEVICES 16
#define MAX_ALLOCATIONS 1024
#define MAX_HOST_REGISTRATIONS 1024
// The real allocator hands out VA in 2 MiB granules; mapping whole granules keeps two allocations
// from ever sharing a page.
#define GRANULE_BYTES (2ull << 20)

// cuda.h declares struct CUctx_st but leaves it opaque: this is the fake's primary context.
struct CUctx_st {
  int ordinal;
  int retainCount;
};

struct allocation {
  int used;
  int ordinal;
  int memfd;
  uintptr_t base;       // the CUdeviceptr: the PROT_NONE view
  unsigned char *shadow; // the read-write view of the same memfd
  size_t sizeBytes;     // as requested (what cuMemGetAddressRange reports)
  size_t mappedBytes;   // sizeBytes rounded up to GRANULE_BYTES
};

struct host_registration {
  int used;
  int ordinal;
  uintptr_t start;
  size_t sizeBytes;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;
static int deviceCount;
static int dmaBufSupported = 1;
static struct CUctx_st primary[MAX_DEVICES];
static struct allocation allocations[MAX_ALLOCATIONS];
static struct host_registration registrations[MAX_HOST_REGISTRATIONS];
// The CUDA current context is per thread, as in the driver.
static __thread struct CUctx_st *current;

#define REQUIRE_INIT()                                                     \
  do {                                                                     \
    if (!__atomic_load_n(&initialized, __ATOMIC_ACQUIRE)) return CUDA_ERROR_NOT_INITIALIZED; \
  } while (0)

#define REQUIRE_DEVICE(dev)                                                 \
  do {                                                                     \
    if ((dev) < 0 || (dev) >= deviceCount) return CUDA_ERROR_INVALID_DEVICE; \
  } while (0)

static int contextIsUsable(void) {
  return current != NULL && __atomic_load_n(&current->retainCount, __ATOMIC_ACQUIRE) > 0;
}

#define REQUIRE_CONTEXT()                                  \
  do {                                                     \
    if (!contextIsUsable()) return CUDA_ERROR_INVALID_CONTEXT; \
  } while (0)

static size_t pageBytes(void) { return (size_t)sysconf(_SC_PAGESIZE); }

// [start, start + n) inside [base, base + size), without overflow.
static int rangeInside(uintptr_t start, size_t n, uintptr_t base, size_t size) {
  return start >= base && start - base <= size && n <= size - (start - base);
}

static int rangesOverlap(uintptr_t a, size_t an, uintptr_t b, size_t bn) {
  return a < b + bn && b < a + an;
}

// Call with the lock held. The allocation containing all of [p, p + n), or NULL.
static struct allocation *allocationContaining(uintptr_t p, size_t n) {
  for (int i = 0; i < MAX_ALLOCATIONS; i++) {
    struct allocation *a = &allocations[i];
    if (a->used && rangeInside(p, n, a->base, a->sizeBytes)) return a;
  }
  return NULL;
}

// Call with the lock held. Whether [p, p + n) touches any allocation's mapping.
static int touchesAllocation(uintptr_t p, size_t n) {
  for (int i = 0; i < MAX_ALLOCATIONS; i++) {
    struct allocation *a = &allocations[i];
    if (a->used && rangesOverlap(p, n ? n : 1, a->base, a->mappedBytes)) return 1;
  }
  return 0;
}

static int parseDeviceCount(const char *text, int *out) {
  if (text == NULL || *text == '\0') {
    *out = 1;
    return 1;
  }
  char *end;
  long n = strtol(text, &end, 10);
  if (*end != '\0' || n < 0 || n > MAX_DEVICES) return 0;
  *out = (int)n;
  return 1;
}

CUresult cuInit(unsigned int Flags) {
  if (Flags != 0) return CUDA_ERROR_INVALID_VALUE;
  pthread_mutex_lock(&lock);
  CUresult rc = CUDA_SUCCESS;
  if (!initialized) {
    int count;
    if (!parseDeviceCount(getenv("FAKECUDA_DEVICES"), &count)) {
      fprintf(stderr, "fakecuda: FAKECUDA_DEVICES=%s must be a count from 0 to %d\n", getenv("FAKECUDA_DEVICES"), MAX_DEVICES);
      rc = CUDA_ERROR_UNKNOWN;
    } else if (count == 0) {
      rc = CUDA_ERROR_NO_DEVICE;
    } else {
      const char *dmabuf = getenv("FAKECUDA_DMABUF");
      dmaBufSupported = !(dmabuf != NULL && strcmp(dmabuf, "0") == 0);
      deviceCount = count;
      for (int i = 0; i < MAX_DEVICES; i++) primary[i].ordinal = i;
      __atomic_store_n(&initialized, 1, __ATOMIC_RELEASE);
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

CUresult cuDriverGetVersion(int *driverVersion) {
  if (driverVersion == NULL) return CUDA_ERROR_INVALID_VALUE;
  *driverVersion = CUDA_VERSION;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
  REQUIRE_INIT();
  if (count == NULL) return CUDA_ERROR_INVALID_VALUE;
  *count = deviceCount;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  REQUIRE_INIT();
  if (device == NULL) return CUDA_ERROR_INVALID_VALUE;
  REQUIRE_DEVICE(ordinal);
  *device = ordinal;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
  REQUIRE_INIT();
  if (name == NULL || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  REQUIRE_DEVICE(dev);
  snprintf(name, (size_t)len, "Fake GPU %d", dev);
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev) {
  REQUIRE_INIT();
  if (pciBusId == NULL || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  REQUIRE_DEVICE(dev);
  // Upper-case hex, as the driver writes it (sysfs spells the same address in lower case).
  snprintf(pciBusId, (size_t)len, "%04X:%02X:%02X.0", 0, dev + 1, 0);
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev) {
  REQUIRE_INIT();
  if (pi == NULL) return CUDA_ERROR_INVALID_VALUE;
  REQUIRE_DEVICE(dev);
  switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID:
      *pi = dev + 1;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID:
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID:
      *pi = 0;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
    case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED:
      *pi = 1;
      return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED:
      *pi = dmaBufSupported;
      return CUDA_SUCCESS;
    default:
      // Not modelled; the driver answers INVALID_VALUE for an attribute it does not know.
      return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) {
  REQUIRE_INIT();
  if (pctx == NULL) return CUDA_ERROR_INVALID_VALUE;
  REQUIRE_DEVICE(dev);
  __atomic_add_fetch(&primary[dev].retainCount, 1, __ATOMIC_ACQ_REL);
  *pctx = &primary[dev];
  return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice dev) {
  REQUIRE_INIT();
  REQUIRE_DEVICE(dev);
  pthread_mutex_lock(&lock);
  CUresult rc = CUDA_SUCCESS;
  if (primary[dev].retainCount <= 0) {
    rc = CUDA_ERROR_INVALID_CONTEXT;
  } else {
    __atomic_sub_fetch(&primary[dev].retainCount, 1, __ATOMIC_ACQ_REL);
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
  REQUIRE_INIT();
  if (ctx == NULL) {
    current = NULL;
    return CUDA_SUCCESS;
  }
  if (ctx < &primary[0] || ctx >= &primary[deviceCount] || __atomic_load_n(&ctx->retainCount, __ATOMIC_ACQUIRE) <= 0) {
    return CUDA_ERROR_INVALID_CONTEXT;
  }
  current = ctx;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *pctx) {
  REQUIRE_INIT();
  if (pctx == NULL) return CUDA_ERROR_INVALID_VALUE;
  *pctx = current;
  return CUDA_SUCCESS;
}

// Needs no current context: with unified addressing the driver answers from the address alone
// (Mooncake asks this first, to learn which device's context to make current).
CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr) {
  REQUIRE_INIT();
  if (data == NULL) return CUDA_ERROR_INVALID_VALUE;
  pthread_mutex_lock(&lock);
  int ordinal = -1;
  unsigned int type = 0;
  struct allocation *a = allocationContaining((uintptr_t)ptr, 1);
  if (a != NULL) {
    ordinal = a->ordinal;
    type = CU_MEMORYTYPE_DEVICE;
  } else {
    for (int i = 0; i < MAX_HOST_REGISTRATIONS; i++) {
      struct host_registration *r = &registrations[i];
      if (r->used && rangeInside((uintptr_t)ptr, 1, r->start, r->sizeBytes)) {
        ordinal = r->ordinal;
        type = CU_MEMORYTYPE_HOST;
        break;
      }
    }
  }
  pthread_mutex_unlock(&lock);
  // Memory CUDA knows nothing about (plain malloc) is INVALID_VALUE, as in the driver.
  if (type == 0) return CUDA_ERROR_INVALID_VALUE;
  switch (attribute) {
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      *(unsigned int *)data = type;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
      *(int *)data = ordinal;
      return CUDA_SUCCESS;
    case CU_POINTER_ATTRIBUTE_CONTEXT:
      *(CUcontext *)data = &primary[ordinal];
      return CUDA_SUCCESS;
    default:
      return CUDA_ERROR_INVALID_VALUE; // not modelled
  }
}

CUresult cuMemAlloc(CUdeviceptr *dptr, size_t bytesize) {
  REQUIRE_INIT();
  REQUIRE_CONTEXT();
  if (dptr == NULL || bytesize == 0 || bytesize > (1ull << 46)) return CUDA_ERROR_INVALID_VALUE;
  size_t mapped = (bytesize + GRANULE_BYTES - 1) / GRANULE_BYTES * GRANULE_BYTES;
  pthread_mutex_lock(&lock);
  struct allocation *slot = NULL;
  for (int i = 0; i < MAX_ALLOCATIONS && slot == NULL; i++) {
    if (!allocations[i].used) slot = &allocations[i];
  }
  CUresult rc = CUDA_ERROR_OUT_OF_MEMORY;
  int fd = -1;
  void *view = MAP_FAILED, *shadow = MAP_FAILED;
  if (slot == NULL) goto out;
  fd = memfd_create("fakecuda-device-memory", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, (off_t)mapped) != 0) goto out;
  view = mmap(NULL, mapped, PROT_NONE, MAP_SHARED, fd, 0);
  // MAP_SHARED: the shadow's writes must reach the memfd, where a dma-buf mapping sees them.
  shadow = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (view == MAP_FAILED || shadow == MAP_FAILED) goto out;
  *slot = (struct allocation){
      .used = 1,
      .ordinal = current->ordinal,
      .memfd = fd,
      .base = (uintptr_t)view,
      .shadow = shadow,
      .sizeBytes = bytesize,
      .mappedBytes = mapped,
  };
  *dptr = (CUdeviceptr)(uintptr_t)view;
  rc = CUDA_SUCCESS;
out:
  if (rc != CUDA_SUCCESS) {
    if (view != MAP_FAILED) munmap(view, mapped);
    if (shadow != MAP_FAILED) munmap(shadow, mapped);
    if (fd >= 0) close(fd);
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

CUresult cuMemFree(CUdeviceptr dptr) {
  REQUIRE_INIT();
  REQUIRE_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult rc = CUDA_ERROR_INVALID_VALUE;
  for (int i = 0; i < MAX_ALLOCATIONS; i++) {
    struct allocation *a = &allocations[i];
    if (a->used && a->base == (uintptr_t)dptr) {
      munmap((void *)a->base, a->mappedBytes);
      munmap(a->shadow, a->mappedBytes);
      close(a->memfd); // exported dma-bufs are dups: they keep the memory alive, as in the kernel
      memset(a, 0, sizeof *a);
      rc = CUDA_SUCCESS;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

CUresult cuMemGetAddressRange(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr) {
  REQUIRE_INIT();
  REQUIRE_CONTEXT();
  pthread_mutex_lock(&lock);
  struct allocation *a = allocationContaining((uintptr_t)dptr, 1);
  if (a != NULL) {
    if (pbase != NULL) *pbase = (CUdeviceptr)a->base;
    if (psize != NULL) *psize = a->sizeBytes;
  }
  pthread_mutex_unlock(&lock);
  return a != NULL ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

// One side of a copy, resolved under the lock: the address the fake may touch, or NULL when the
// range is invalid. A device address must lie inside one allocation (reached through its shadow); a
// host address must not touch device memory (the fake would fault on the PROT_NONE view).
static void *resolveDevice(uintptr_t p, size_t n) {
  struct allocation *a = allocationContaining(p, n);
  return a != NULL ? a->shadow + (p - a->base) : NULL;
}

static void *resolveHost(uintptr_t p, size_t n) {
  return p != 0 && !touchesAllocation(p, n) ? (void *)p : NULL;
}

static CUresult copy(void *(*resolveDst)(uintptr_t, size_t), uintptr_t dst, void *(*resolveSrc)(uintptr_t, size_t), uintptr_t src,
                     size_t n) {
  REQUIRE_INIT();
  REQUIRE_CONTEXT();
  if (n == 0) return CUDA_SUCCESS;
  pthread_mutex_lock(&lock);
  void *to = resolveDst(dst, n), *from = resolveSrc(src, n);
  // Copied under the lock, so a concurrent cuMemFree cannot unmap the shadow mid-copy.
  if (to != NULL && from != NULL) memmove(to, from, n);
  pthread_mutex_unlock(&lock);
  return to != NULL && from != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// Unified addressing: either side may be device memory (inside an allocation) or host memory
// (touching none).
static void *resolveUnified(uintptr_t p, size_t n) {
  void *device = resolveDevice(p, n);
  return device != NULL ? device : resolveHost(p, n);
}

CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount) {
  return copy(resolveUnified, (uintptr_t)dst, resolveUnified, (uintptr_t)src, ByteCount);
}

CUresult cuMemcpyHtoD(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount) {
  return copy(resolveDevice, (uintptr_t)dstDevice, resolveHost, (uintptr_t)srcHost, ByteCount);
}

CUresult cuMemcpyDtoH(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount) {
  return copy(resolveHost, (uintptr_t)dstHost, resolveDevice, (uintptr_t)srcDevice, ByteCount);
}

CUresult cuMemHostRegister(void *p, size_t bytesize, unsigned int Flags) {
  REQUIRE_INIT();
  REQUIRE_CONTEXT();
  unsigned int known = CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP | CU_MEMHOSTREGISTER_IOMEMORY | CU_MEMHOSTREGISTER_READ_ONLY;
  if (p == NULL || bytesize == 0 || (Flags & ~known) != 0) return CUDA_ERROR_INVALID_VALUE;
  pthread_mutex_lock(&lock);
  CUresult rc = CUDA_SUCCESS;
  struct host_registration *slot = NULL;
  if (touchesAllocation((uintptr_t)p, bytesize)) {
    rc = CUDA_ERROR_INVALID_VALUE;
    goto out;
  }
  for (int i = 0; i < MAX_HOST_REGISTRATIONS; i++) {
    struct host_registration *r = &registrations[i];
    if (r->used && rangesOverlap((uintptr_t)p, bytesize, r->start, r->sizeBytes)) {
      rc = CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
      goto out;
    }
    if (!r->used && slot == NULL) slot = r;
  }
  if (slot == NULL) {
    rc = CUDA_ERROR_OUT_OF_MEMORY;
    goto out;
  }
  *slot = (struct host_registration){.used = 1, .ordinal = current->ordinal, .start = (uintptr_t)p, .sizeBytes = bytesize};
out:
  pthread_mutex_unlock(&lock);
  return rc;
}

CUresult cuMemHostUnregister(void *p) {
  REQUIRE_INIT();
  REQUIRE_CONTEXT();
  pthread_mutex_lock(&lock);
  CUresult rc = CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
  for (int i = 0; i < MAX_HOST_REGISTRATIONS; i++) {
    struct host_registration *r = &registrations[i];
    if (r->used && r->start == (uintptr_t)p) {
      memset(r, 0, sizeof *r);
      rc = CUDA_SUCCESS;
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

CUresult cuMemGetHandleForAddressRange(void *handle, CUdeviceptr dptr, size_t size, CUmemRangeHandleType handleType,
                                       unsigned long long flags) {
  REQUIRE_INIT();
  REQUIRE_CONTEXT();
  if (handle == NULL || handleType != CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD) return CUDA_ERROR_INVALID_VALUE;
  if (!dmaBufSupported) return CUDA_ERROR_NOT_SUPPORTED;
  if (flags == CU_MEM_RANGE_FLAG_DMA_BUF_MAPPING_TYPE_PCIE) return CUDA_ERROR_NOT_SUPPORTED; // no BAR1 here
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  size_t page = pageBytes();
  if (size == 0 || size % page != 0 || dptr % page != 0) return CUDA_ERROR_INVALID_VALUE;
  pthread_mutex_lock(&lock);
  CUresult rc = CUDA_ERROR_INVALID_VALUE;
  for (int i = 0; i < MAX_ALLOCATIONS; i++) {
    struct allocation *a = &allocations[i];
    // The whole range from the allocation's base (what Mooncake exports), up to its last page.
    if (a->used && a->base == (uintptr_t)dptr && size <= (a->sizeBytes + page - 1) / page * page) {
      int fd = fcntl(a->memfd, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) {
        rc = CUDA_ERROR_OUT_OF_MEMORY;
      } else {
        *(int *)handle = fd;
        rc = CUDA_SUCCESS;
      }
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

// The driver's own names and descriptions for the codes this fake returns, and a few more that
// ffi/cuda-abi.ts names. Unknown codes: INVALID_VALUE and *pStr = NULL, as in the driver.
static const struct {
  CUresult code;
  const char *name;
  const char *text;
} errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {CUDA_ERROR_DEVICE_UNAVAILABLE, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
     "part or all of the requested memory range is already mapped"},
    {CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
     "pointer does not correspond to a registered memory region"},
    {CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
     "system has unsupported display driver / cuda driver combination"},
    {CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
     "forward compatibility was attempted on non supported HW"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult describe(CUresult error, const char **pStr, int wantName) {
  if (pStr == NULL) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
    if (errors[i].code == error) {
      *pStr = wantName ? errors[i].name : errors[i].text;
      return CUDA_SUCCESS;
    }
  }
  *pStr = NULL;
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorName(CUresult error, const char **pStr) { return describe(error, pStr, 1); }

CUresult cuGetErrorString(CUresult error, const char **pStr) { return describe(error, pStr, 0); }
