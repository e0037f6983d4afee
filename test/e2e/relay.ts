/**
 * How the test process (root namespace, which has no route into the lab) still talks to the nodes' event
 * sockets: a relay process inside the fabric namespace listens on a unix socket (a file, reachable from
 * both namespaces) and connects, inside the lab, to the address named on each connection's first line.
 * On the root side, `Door` listens on 127.0.0.1 (loopback only) and hands every connection to the relay,
 * so the ordinary event-socket client works unchanged. The relay connects only to the lab's subnets.
 *
 *   ip netns exec <fabric> node --import tsx test/e2e/relay-main.ts /run/fsha-e2e-x/relay.sock
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { SUBNETS } from './net';

/** Root side: a loopback port that leads to `target` (host:port inside the lab) through the relay. */
export class Door {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(
    private readonly relaySocket: string,
    readonly target: string,
  ) {}

  open(): Promise<number> {
    return new Promise((resolve, reject) => {
      const server = createServer((inbound) => {
        this.sockets.add(inbound);
        const outbound = connect({ path: this.relaySocket }, () => {
          outbound.setNoDelay?.(true);
          outbound.write(`${this.target}\n`);
          inbound.pipe(outbound);
          outbound.pipe(inbound);
        });
        this.sockets.add(outbound);
        const end = () => {
          inbound.destroy();
          outbound.destroy();
          this.sockets.delete(inbound);
          this.sockets.delete(outbound);
        };
        inbound.on('error', end).on('close', end);
        outbound.on('error', end).on('close', end);
      });
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        this.server = server;
        this.port = (server.address() as { port: number }).port;
        resolve(this.port);
      });
    });
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server?.close();
    this.server = null;
  }
}

function inLab(host: string): boolean {
  return SUBNETS.some((n) => host.startsWith(`${n.prefix}.`) && /^\d+\.\d+\.\d+\.\d+$/.test(host));
}

/** Fabric side (a process of its own). */
export function relay(path: string): void {
  const server = createServer((client) => {
    client.setNoDelay?.(true);
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const nl = head.indexOf(10);
      if (nl < 0) {
        if (head.length > 256) client.destroy();
        return;
      }
      client.off('data', onData);
      client.pause();
      const [host, port] = head.subarray(0, nl).toString('utf8').split(':');
      const rest = head.subarray(nl + 1);
      if (!inLab(host) || !/^\d+$/.test(port ?? '')) {
        client.destroy();
        return;
      }
      const far = connect({ host, port: Number(port) }, () => {
        far.setNoDelay(true);
        if (rest.length) far.write(rest);
        client.pipe(far);
        far.pipe(client);
        client.resume();
      });
      const end = () => {
        client.destroy();
        far.destroy();
      };
      far.on('error', end).on('close', end);
      client.on('error', end).on('close', end);
    };
    client.on('data', onData);
    client.on('error', () => client.destroy());
  });
  server.listen(path, () => process.stdout.write('relay listening\n'));
  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
