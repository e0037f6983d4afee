/**
 * The proof that the lab is sealed: tcpdump on every interface of the root namespace (none of them is the
 * lab's), filtered on the lab's subnets and on VRRP, for the whole test file. A canary datagram to
 * 127.0.0.1 that the filter also matches proves each capture was live: loopback must show the canaries and
 * nothing else, every other interface nothing at all.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SUBNETS } from './net';

export interface Captured {
  iface: string;
  packets: string[];
}

export class RootCapture {
  private readonly dir = mkdtempSync(join(tmpdir(), 'fsha-seal-'));
  private readonly procs: Array<{ iface: string; child: ChildProcess; file: string; err: string }> = [];
  readonly canaryPort = 40000 + Math.floor(Math.random() * 20000);
  canariesSent = 0;

  /** The tcpdump filter: any packet to or from a lab subnet, any VRRP, and our canary. */
  get filter(): string {
    return [
      ...SUBNETS.map((n) => `net ${n.cidr}`),
      'ip proto 112',
      `(udp and dst host 127.0.0.1 and dst port ${this.canaryPort})`,
    ].join(' or ');
  }

  /** Every interface of the root namespace, and whether it is up (a down one carries nothing: not captured). */
  static rootInterfaces(): Array<{ name: string; up: boolean }> {
    const out = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout ?? '';
    return out
      .split('\n')
      .map((l) => l.match(/^\d+: ([^:@\s]+)(?:@\S+)?: <([^>]*)>/))
      .filter((m): m is RegExpMatchArray => !!m)
      .map((m) => ({ name: m[1], up: m[2].split(',').includes('UP') }));
  }

  /** Starts a capture on every root interface that is up; returns their names. */
  async start(): Promise<string[]> {
    const ifaces = RootCapture.rootInterfaces()
      .filter((i) => i.up)
      .map((i) => i.name);
    for (const iface of ifaces) {
      const file = join(this.dir, `${iface}.pcap`);
      // -p: no promiscuous mode (what leaks is sent by this machine); --immediate-mode and -U: every packet
      // reaches the file at once (without them, packets still in the kernel's ring block at SIGINT are lost)
      const child = spawn('tcpdump', ['-i', iface, '-p', '-n', '--immediate-mode', '-U', '-w', file, this.filter], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const p = { iface, child, file, err: '' };
      child.stderr!.on('data', (d: Buffer) => {
        p.err += d.toString('utf8');
      });
      this.procs.push(p);
    }
    const deadline = Date.now() + 10000;
    while (this.procs.some((p) => !/listening on/.test(p.err))) {
      const dead = this.procs.find((p) => p.child.exitCode !== null);
      if (dead) throw new Error(`tcpdump on ${dead.iface} did not start: ${dead.err.trim()}`);
      if (Date.now() > deadline)
        throw new Error(
          `tcpdump did not start listening within 10 s: ${this.procs.map((p) => `${p.iface}: ${p.err.trim()}`).join('; ')}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.canary();
    return ifaces;
  }

  /** One datagram to 127.0.0.1 that only the captures' filter cares about (nothing listens there). */
  async canary(): Promise<void> {
    const s = createSocket('udp4');
    await new Promise<void>((resolve) => s.send('fs-ha lab canary', this.canaryPort, '127.0.0.1', () => resolve()));
    s.close();
    this.canariesSent++;
  }

  /** Stop every capture and read back what each saw. */
  async stop(): Promise<Captured[]> {
    await this.canary();
    await new Promise((r) => setTimeout(r, 300)); // let tcpdump write the last canary
    await Promise.all(
      this.procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null) return resolve();
            p.child.once('exit', () => resolve());
            p.child.kill('SIGINT');
          }),
      ),
    );
    const got = this.procs.map((p) => {
      const r = spawnSync('tcpdump', ['-r', p.file, '-n', '-tt'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`tcpdump -r ${p.file}: ${r.stderr.trim()}`);
      return { iface: p.iface, packets: r.stdout.split('\n').filter(Boolean) };
    });
    rmSync(this.dir, { recursive: true, force: true });
    return got;
  }

  /** Stop every capture without reading it (a run that skipped the sealed check must still end). */
  kill(): void {
    for (const p of this.procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  isCanary(line: string): boolean {
    return new RegExp(`> 127\\.0\\.0\\.1\\.${this.canaryPort}: UDP`).test(line);
  }
}
