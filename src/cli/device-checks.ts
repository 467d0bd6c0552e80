// Start-up checks for the hardware a command asks for: RDMA NICs (`--protocol rdma`) and CUDA
// devices (`--device`, `--use_vram`). Each fails with a ConfigError (exit 2, one line saying what
// was looked for and how to fix it) before anything starts.

import { ConfigError } from "../config/errors.ts";

/**
 * protocol rdma: exit 2 (ConfigError) before anything starts when libibverbs is missing, the host
 * has no RDMA device, or device_name names one it does not have.
 */
export async function checkRdmaDevices(deviceName: string): Promise<void> {
  const { listRdmaDevices } = await import("../../ffi/ibverbs.ts");
  const rdma = listRdmaDevices();
  if (!rdma.ok) throw new ConfigError(`protocol rdma: ${rdma.reason}`);
  const wanted = deviceName.split(",").map((d) => d.trim()).filter((d) => d.length > 0);
  const missing = wanted.filter((d) => !rdma.devices.includes(d));
  if (missing.length > 0) {
    throw new ConfigError(`protocol rdma: device_name ${missing.join(", ")} not found; this host has ${rdma.devices.join(", ")}`);
  }
}

/**
 * `name` ("cuda:N") must be a CUDA device of this host; returns its ordinal. `flag` names the
 * option in the message (`--device`, `kv put --device`).
 */
export async function checkCudaDevice(flag: string, name: string): Promise<number> {
  const { listCudaDevices, parseDeviceName } = await import("../../ffi/cuda.ts");
  let ordinal: number;
  try {
    ordinal = parseDeviceName(name);
  } catch (e) {
    throw new ConfigError(`${flag}: ${(e as Error).message}`);
  }
  const gpus = listCudaDevices();
  if (!gpus.ok) throw new ConfigError(`${flag} ${name}: ${gpus.reason}`);
  if (ordinal >= gpus.devices.length) {
    throw new ConfigError(`${flag} ${name}: this host has ${gpus.devices.length} CUDA device(s) (cuda:0…cuda:${gpus.devices.length - 1})`);
  }
  return ordinal;
}
