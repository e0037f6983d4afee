/**
 * The lab's networks, set here and nowhere else. The lab is sealed: every address below lives only in
 * namespaces the lab creates (the "fabric" namespace holds both bridges, PostgreSQL, sipp and the relay;
 * each node has its own namespace with a veth into each bridge). The root namespace gets no address and
 * no route into them: while a lab is up it holds an `unreachable` route for each subnet (protocol
 * GUARD_PROTO), so a packet that some test code addressed to the lab from the root namespace fails at
 * once instead of following the default route out of the machine.
 *
 * The keepalived/fs-ha templates are written for the documentation ranges 192.0.2.0/24 (service) and
 * 198.51.100.0/24 (management); the lab runs those very files with their addresses moved into its own
 * subnets, host part kept (`fromTemplate`), because the machine's own interface may sit in a TEST-NET
 * range (here eth0 is 192.0.2.2/24). FSHA_LAB_NETS="SERVICE/24,MGMT/24" moves the lab elsewhere.
 */
import { spawnSync } from 'node:child_process';

export interface Subnet {
  name: 'service' | 'management';
  cidr: string;
  prefix: string;
  template: string;
}

/** 198.18.0.0/15 is set aside for network benchmarks and labs (RFC 2544); nothing on the Internet answers there. */
const DEFAULT_NETS = '198.18.1.0/24,198.18.2.0/24';

function subnet(name: Subnet['name'], cidr: string, template: string): Subnet {
  const m = cidr.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/);
  if (!m || m.slice(1).some((o) => Number(o) > 255))
    throw new Error(`FSHA_LAB_NETS: ${name} subnet ${cidr} is not of the form A.B.C.0/24`);
  return { name, cidr, prefix: `${m[1]}.${m[2]}.${m[3]}`, template };
}

const [serviceCidr, mgmtCidr] = (process.env.FSHA_LAB_NETS ?? DEFAULT_NETS).split(',').map((s) => s.trim());
export const SERVICE = subnet('service', serviceCidr, '192.0.2');
export const MGMT = subnet('management', mgmtCidr ?? '', '198.51.100');
export const SUBNETS = [SERVICE, MGMT];

export const host = (net: Subnet, n: number): string => `${net.prefix}.${n}`;
/** the far end (sipp) on the service net, in the fabric namespace */
export const SERVICE_GW = host(SERVICE, 254);
/** PostgreSQL on the management net, in the fabric namespace */
export const MGMT_DB = host(MGMT, 5);
/** the pair's VIP */
export const VIP = host(SERVICE, 100);
/** the routing protocol number that marks the lab's guard routes in the root namespace */
export const GUARD_PROTO = '199';

/** A template's addresses (192.0.2.X, 198.51.100.X) moved into the lab's subnets, host part kept. */
export function fromTemplate(text: string): string {
  let out = text;
  for (const net of SUBNETS)
    out = out.replace(new RegExp(`(?<![\\d.])${net.template.replace(/\./g, '\\.')}\\.(?=\\d)`, 'g'), `${net.prefix}.`);
  return out;
}

function toInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

function range(cidr: string): [number, number] {
  const [ip, bits] = cidr.split('/');
  const len = bits === undefined ? 32 : Number(bits);
  const size = 2 ** (32 - len);
  const start = Math.floor(toInt(ip) / size) * size;
  return [start, start + size - 1];
}

/**
 * The lines of `ip -4 -o route show table all` that route into one of the subnets (or a part of them):
 * pure, so the refusal is unit tested. The default route is not one (it routes everything; the guards
 * keep lab addresses off it), and neither are the lab's own guards.
 */
export function routeConflicts(routes: string, subnets: Subnet[] = SUBNETS): string[] {
  const hits: string[] = [];
  for (const line of routes
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    const words = line.split(/\s+/);
    const types = [
      'unicast',
      'local',
      'broadcast',
      'multicast',
      'unreachable',
      'blackhole',
      'prohibit',
      'throw',
      'anycast',
      'nat',
    ];
    const dst = types.includes(words[0]) ? words[1] : words[0];
    if (!dst || dst === 'default' || !/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dst)) continue;
    const proto = words[words.indexOf('proto') + 1];
    if (words.includes('proto') && proto === GUARD_PROTO && words[0] === 'unreachable') continue;
    const [a0, a1] = range(dst);
    for (const net of subnets) {
      const [b0, b1] = range(net.cidr);
      if (a0 <= b1 && b0 <= a1) hits.push(`the lab's ${net.name} subnet ${net.cidr} is already routed here (${line})`);
    }
  }
  return hits;
}

function ip(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10000 });
  return { code: r.status ?? -1, out: r.stdout ?? '', err: r.stderr ?? '' };
}

/** Throws one line naming the conflict if the root namespace routes a subnet the lab would use. */
export function refuseRoutedSubnets(): void {
  const conflicts = routeConflicts(ip(['-4', '-o', 'route', 'show', 'table', 'all']).out);
  if (conflicts.length)
    throw new Error(`e2e lab refuses to start: ${conflicts[0]}; set FSHA_LAB_NETS to two free /24 subnets`);
}

/** Unreachable routes for the lab's subnets in the root namespace, for as long as a lab is up. */
export function addGuards(): void {
  for (const net of SUBNETS) {
    const r = ip(['route', 'replace', 'unreachable', net.cidr, 'proto', GUARD_PROTO]);
    if (r.code !== 0) throw new Error(`e2e lab: cannot add the guard route for ${net.cidr}: ${r.err.trim()}`);
  }
}

export function removeGuards(): void {
  ip(['route', 'flush', 'proto', GUARD_PROTO]);
}

/** What the root namespace has of the lab: addresses, and routes that lead anywhere (guards excluded). */
export function rootExposure(): string[] {
  const found: string[] = [];
  for (const line of ip(['-4', '-o', 'addr', 'show']).out.split('\n').filter(Boolean)) {
    const addr = line.match(/inet (\d+\.\d+\.\d+\.\d+)/)?.[1];
    if (addr && SUBNETS.some((n) => addr.startsWith(`${n.prefix}.`)))
      found.push(`root namespace has a lab address: ${line.trim()}`);
  }
  found.push(
    ...routeConflicts(ip(['-4', '-o', 'route', 'show', 'table', 'all']).out).map((c) => `root namespace: ${c}`),
  );
  for (const addr of [SERVICE_GW, MGMT_DB, VIP, host(SERVICE, 11), host(MGMT, 11)]) {
    const r = ip(['-4', 'route', 'get', addr]);
    if (r.code === 0) found.push(`root namespace has a route to ${addr}: ${r.out.trim().split('\n')[0]}`);
  }
  return found;
}
