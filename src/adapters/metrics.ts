/**
 * The agent's metrics in Prometheus's text exposition format (version 0.0.4), served on loopback only.
 * Small enough to write here: a few gauges and counters, no histogram (prom-client would be 10x the code).
 */
import type { Server } from 'node:http';

export interface Sample {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  values: Array<{ labels?: Record<string, string>; value: number }>;
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

export function render(samples: Sample[]): string {
  const out: string[] = [];
  for (const s of samples) {
    out.push(`# HELP ${s.name} ${s.help}`, `# TYPE ${s.name} ${s.type}`);
    for (const v of s.values) {
      const labels =
        v.labels && Object.keys(v.labels).length
          ? `{${Object.entries(v.labels)
              .map(([k, x]) => `${k}="${esc(x)}"`)
              .join(',')}}`
          : '';
      out.push(`${s.name}${labels} ${Number.isFinite(v.value) ? v.value : 0}`);
    }
  }
  return out.join('\n') + '\n';
}

export class MetricsServer {
  private server: Server | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly samples: () => Sample[],
  ) {}

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      // loaded here, not at start-up: every command (check_fs every second) shares the bundle
      const { createServer } = require('node:http') as typeof import('node:http');
      const server = createServer((req, res) => {
        if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
          res.writeHead(404).end('only /metrics\n');
          return;
        }
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(render(this.samples()));
      });
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        this.server = server;
        resolve();
      });
    });
  }

  close(): void {
    this.server?.close();
  }
}
