/** Issue 26: the VIP farm's trap seen before it bites: status names a node whose calls bind addresses its config does not list. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '../../src/commands/status';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';

configureLog({ syslog: false, stderr: false });

test('26.1 status: a node whose calls bind an address not under its addresses (its profiles on a VIP, its fixed address listed) is named; listed right, nothing is said', async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  await c.sims.fs1.answerCalls(3);
  const right = await status(c.config('fs2'));
  assert.deepEqual(
    right.warnings.filter((w) => /calls bind/.test(w)),
    [],
  );
  const wrong = c.config('fs2');
  wrong.nodes.fs1 = { ...wrong.nodes.fs1, addresses: ['192.0.2.11'] };
  const s = await status(wrong);
  assert.ok(
    s.warnings.some((w) =>
      w.startsWith(
        `fs1's calls bind ${c.addr.fs1} (local_media_ip / sip_local_network_addr of its rows), which nodes.fs1.addresses [192.0.2.11] does not list`,
      ),
    ),
    s.warnings.join('\n'),
  );
});
