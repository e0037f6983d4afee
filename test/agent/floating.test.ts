/**
 * Issue 26: clouds without gratuitous ARP. floating.command runs when an instance of fs-ha's becomes MASTER
 * (beside the takeover) and when it leaves MASTER, with the facts in its environment; a failing or hanging
 * command is logged at ERROR and bounded, and never stops the takeover.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, chmodSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { notify } from '../../src/commands/notify';
import { configureLog } from '../../src/log';
import { withCluster } from '../helpers/cluster';

configureLog({ syslog: false, stderr: false });

test("26.3 floating.command claims the instance's address on MASTER beside the takeover and releases it when MASTER is left (not on a BACKUP that never was MASTER); a failing or hanging command is logged and bounded, the calls are taken over all the same", async (t) => {
  const c = await withCluster(t, { nodes: ['fs1', 'fs2'] });
  const dir = mkdtempSync(join(tmpdir(), 'fsha-floating-'));
  const seen = join(dir, 'seen');
  const hook = join(dir, 'move-address');
  // a provider's CLI stand-in: what it was asked, one line per run; "fail" and "hang" as a broken API would
  writeFileSync(
    hook,
    `#!/bin/sh\necho "$FSHA_STATE $FSHA_INSTANCE $FSHA_ADDRESS $FSHA_NODE" >> ${seen}\n[ -f ${dir}/fail ] && { echo 'api: 403 forbidden' >&2; exit 3; }\n[ -f ${dir}/hang ] && sleep 30\nexit 0\n`,
  );
  chmodSync(hook, 0o755);
  const logFile = join(dir, 'fs-ha.log');
  const cfgText = `instances: { VI_FS: fs1 }\nfloating: { command: ${hook}, addresses: { VI_FS: 203.0.113.10 }, timeout_ms: 500 }\nstate_dir: ${join(dir, 'state')}`;
  const cfg = c.config('fs2', cfgText);
  configureLog({ syslog: false, stderr: false, file: logFile });
  t.after(() => configureLog({ syslog: false, stderr: false }));
  const lines = () => (existsSync(seen) ? readFileSync(seen, 'utf8').trim().split('\n') : []);

  await notify(cfg, 'BACKUP', 'VI_FS');
  assert.deepEqual(lines(), [], 'a BACKUP that was never MASTER releases nothing');
  const calls = await c.sims.fs1.answerCalls(4);
  await c.sims.fs1.crash();
  assert.equal(await notify(cfg, 'MASTER', 'VI_FS'), 0);
  assert.deepEqual(lines(), ['MASTER VI_FS 203.0.113.10 fs2']);
  assert.deepEqual((await c.sims.fs2.ownCalls()).sort(), [...calls].sort(), 'the takeover ran beside it');
  await notify(cfg, 'BACKUP', 'VI_FS');
  assert.deepEqual(lines().slice(1), ['BACKUP VI_FS 203.0.113.10 fs2'], 'leaving MASTER releases');

  writeFileSync(join(dir, 'fail'), '');
  await notify(cfg, 'MASTER', 'VI_FS');
  assert.match(
    readFileSync(logFile, 'utf8'),
    /ERROR .*floating address 203\.0\.113\.10 of VI_FS NOT claimed: floating\.command failed \(exit 3\): api: 403 forbidden/,
  );
  rmSync(join(dir, 'fail'));
  writeFileSync(join(dir, 'hang'), '');
  const t0 = Date.now();
  await notify(cfg, 'BACKUP', 'VI_FS');
  assert.ok(Date.now() - t0 < 5000, `bounded by floating.timeout_ms (${Date.now() - t0} ms)`);
  assert.match(
    readFileSync(logFile, 'utf8'),
    /floating address 203\.0\.113\.10 of VI_FS NOT released: floating\.command did not finish within 500 ms/,
  );
  assert.throws(
    () => c.config('fs2', 'instances: { VI_FS: fs1 }\nfloating: { command: x, addresses: { VI_WEB: 1.2.3.4 } }'),
    /floating\.addresses\.VI_WEB names an instance not listed under instances/,
  );
});
