// An exclusive lock on a directory for one process at a time (the master's state directory): a
// file named LOCK that says which process holds it. Taken with link(2), which fails when the name
// exists, so two processes can never both create it. A lock left behind by a process that died
// (kill -9, a crash) is taken over: its pid no longer exists, is a zombie, or now belongs to
// another process (pid reuse: the start time in /proc/<pid>/stat differs from the one recorded).
// A lock written on another host (a shared file system) is never taken over: there is no way to
// tell from here whether its process lives.
//
// Taking over is race-free between two processes that both find the same stale lock: each moves
// the LOCK file aside with rename(2) and then checks that what it moved is the very inode it judged
// stale; the one that moved a fresh lock by mistake links it back.

import * as fs from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

export interface LockHolder {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot), null where /proc is missing. */
  startTime: string | null;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  /** The holder's command line, shortened. */
  command: string;
}

export interface DirLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Removes the lock file if it is still this lock's (same inode). Idempotent, synchronous. */
  release(): void;
}

export interface LockOptions {
  /** Words for error messages: "state directory". */
  what?: string;
  log?: { warn(message: string): void };
}

export const LOCK_FILE = "LOCK";

/** Process state and start time from /proc/<pid>/stat, or null where it cannot be read. */
export function procStat(pid: number): { state: string; startTime: string } | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const startTime = fields[19]; // field 22 overall; fields[0] is field 3
  if (state === undefined || startTime === undefined) return null;
  return { state, startTime };
}

function me(): LockHolder {
  const command = process.argv.join(" ");
  return {
    pid: process.pid,
    startTime: procStat(process.pid)?.startTime ?? null,
    host: hostname(),
    since: new Date().toISOString(),
    command: command.length > 200 ? `${command.slice(0, 200)}…` : command,
  };
}

function parseHolder(text: string): LockHolder | null {
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (typeof v.pid !== "number" || !Number.isInteger(v.pid) || v.pid <= 0) return null;
    return {
      pid: v.pid,
      startTime: typeof v.startTime === "string" ? v.startTime : null,
      host: typeof v.host === "string" ? v.host : "",
      since: typeof v.since === "string" ? v.since : "?",
      command: typeof v.command === "string" ? v.command : "",
    };
  } catch {
    return null;
  }
}

/** "alive", or why the recorded process is gone. */
function holderState(h: LockHolder): "alive" | "other-host" | "gone" | "zombie" | "reused" {
  if (h.host !== hostname()) return "other-host";
  try {
    process.kill(h.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return "gone";
    // EPERM: it exists and belongs to another user; go on to the start time.
  }
  const stat = procStat(h.pid);
  if (stat === null) return "alive"; // no /proc (or it vanished this instant): do not guess
  if (stat.state === "Z" || stat.state === "X") return "zombie";
  if (h.startTime !== null && stat.startTime !== h.startTime) return "reused";
  return "alive";
}

function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function describe(h: LockHolder): string {
  const self = h.pid === process.pid && h.host === hostname() ? ", this process" : "";
  return `pid ${h.pid} on ${h.host || "an unknown host"}${self}, since ${h.since}${h.command ? `, ${JSON.stringify(h.command)}` : ""}`;
}

/**
 * Takes the lock on `dir` (which must exist) or throws an Error naming the process that holds it.
 * Synchronous: meant for start-up.
 */
export function lockDirectory(dir: string, options: LockOptions = {}): DirLock {
  const what = options.what ?? "directory";
  const lockPath = join(dir, LOCK_FILE);
  const holder = me();
  const unique = `${process.pid}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const tmp = join(dir, `${LOCK_FILE}.${unique}.tmp`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify(holder)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        fs.linkSync(tmp, lockPath);
        const ino = fs.statSync(tmp).ino;
        fsyncDirSync(dir);
        return makeLock(lockPath, ino, holder, options);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      // Someone holds it, or held it. Read it through one descriptor so content and inode match.
      let text: string;
      let ino: number;
      try {
        const lfd = fs.openSync(lockPath, "r");
        try {
          ino = fs.fstatSync(lfd).ino;
          text = fs.readFileSync(lfd, "utf8");
        } finally {
          fs.closeSync(lfd);
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue; // released meanwhile
        throw error;
      }
      const old = parseHolder(text);
      let why: string;
      if (old === null) {
        why = `its content is not a lock record (${JSON.stringify(text.slice(0, 80))})`;
      } else {
        const state = holderState(old);
        if (state === "alive") {
          throw new Error(
            `${what} ${dir} is locked by ${describe(old)}: another process is using it. Stop that process, or give this one another ${what}. (lock file: ${lockPath})`,
          );
        }
        if (state === "other-host") {
          throw new Error(
            `${what} ${dir} is locked by ${describe(old)}; whether that process still runs cannot be checked from ${hostname()}. If it does not, delete ${lockPath}.`,
          );
        }
        why = { gone: "that process no longer exists", zombie: "that process has exited", reused: "that pid now belongs to another process" }[state];
      }
      // Stale: move it aside, then make sure what we moved is the lock we judged.
      const aside = join(dir, `${LOCK_FILE}.stale.${unique}`);
      try {
        fs.renameSync(lockPath, aside);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw error;
      }
      if (fs.statSync(aside).ino !== ino) {
        // Another process took the stale lock over between our read and our rename: give it back.
        try {
          fs.linkSync(aside, lockPath);
        } catch {
          // A third one has linked a new LOCK meanwhile; the next attempt will judge that one.
        }
        fs.unlinkSync(aside);
        continue;
      }
      fs.unlinkSync(aside);
      options.log?.warn(`${what} ${dir}: took over the lock left by ${old ? describe(old) : "an unknown process"}: ${why}`);
    }
    throw new Error(`${what} ${dir}: could not take the lock ${lockPath}: other processes keep taking it`);
  } finally {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}

function makeLock(lockPath: string, ino: number, holder: LockHolder, options: LockOptions): DirLock {
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off("exit", release);
    try {
      if (fs.statSync(lockPath).ino === ino) fs.unlinkSync(lockPath);
      else options.log?.warn(`${lockPath} is no longer this process's lock; left in place`);
    } catch {
      // already gone
    }
  };
  // A process that exits without closing (process.exit) leaves no stale lock behind.
  process.on("exit", release);
  return { path: lockPath, holder, release };
}
