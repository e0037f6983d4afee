/**
 * The UDP ports bound on this host (any address), from /proc/net/udp and udp6: what the kernel knows of the
 * RTP sockets this node's FreeSWITCH holds, calls in set-up included (they have no recovery row yet).
 * Empty when /proc cannot be read (not Linux): the rows and the allocator range still decide.
 */
import { readFile } from 'node:fs/promises';

export async function boundUdpPorts(): Promise<Set<number>> {
  const out = new Set<number>();
  for (const f of ['/proc/net/udp', '/proc/net/udp6']) {
    const text = await readFile(f, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1]; // "0100007F:4FB0"
      const port = local?.split(':')[1];
      if (port) out.add(parseInt(port, 16));
    }
  }
  return out;
}
