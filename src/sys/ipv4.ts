/** The little IPv4 arithmetic the system layer needs (allocation lives in src/model). */

export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

/** "172.18.0.1", 16 -> "172.18.0.0/16" */
export function networkOf(ip: string, prefixLen: number): string {
  const mask = prefixLen === 0 ? 0 : (~0 << (32 - prefixLen)) >>> 0;
  return `${intToIp((ipToInt(ip) & mask) >>> 0)}/${prefixLen}`;
}
