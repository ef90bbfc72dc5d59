// Human-readable numbers for the progress bar and the summary. Binary units throughout, to
// match --max-size and what `ls -lh`/`du -h` print.

const MiB = 1024 * 1024;

/** `0 B`, `512 B`, `1.5 KiB`, `12.3 MiB`, `128.0 GiB`: one decimal above bytes. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** `0.42 s`, `12.3 s`, `2:05`, `1:02:03`: seconds with precision while short, clock form past a minute. */
export function formatDuration(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Throughput in MiB/s; 0 for a zero or negative duration rather than Infinity, so JSON stays valid. */
export function mibPerSecond(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / MiB / seconds : 0;
}

// The library's entry type keys, in the order and wording the summary prints them.
const ENTRY_LABELS: [key: string, one: string, many: string][] = [
  ["file", "file", "files"],
  ["directory", "directory", "directories"],
  ["symlink", "symlink", "symlinks"],
  ["hardlink", "hard link", "hard links"],
  ["char", "char device", "char devices"],
  ["block", "block device", "block devices"],
  ["fifo", "fifo", "fifos"],
  ["whiteout", "whiteout", "whiteouts"],
  ["opaque", "opaque dir", "opaque dirs"],
];

/**
 * `12 (5 files, 4 directories, 1 symlink, ...)` from the summary's entry counts. Zero counts are
 * left out; types the library adds later are printed under their own key rather than dropped.
 */
export function formatEntries(entries: Record<string, number>): string {
  const total = Object.values(entries).reduce((a, b) => a + b, 0);
  const parts: string[] = [];
  const known = new Set<string>();
  for (const [key, one, many] of ENTRY_LABELS) {
    known.add(key);
    const n = entries[key] ?? 0;
    if (n > 0) parts.push(`${n} ${n === 1 ? one : many}`);
  }
  for (const [key, n] of Object.entries(entries)) if (!known.has(key) && n > 0) parts.push(`${n} ${key}`);
  return parts.length === 0 ? `${total}` : `${total} (${parts.join(", ")})`;
}
