/** The simulator against the real transcripts: same bytes on the wire. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startCluster } from '../helpers/cluster';

function talk(port: number, host: string, sends: string[], settleMs = 150): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, host);
    let out = '';
    s.on('data', (d) => {
      out += d.toString();
    });
    s.on('error', reject);
    s.on('close', () => resolve(out));
    s.on('connect', async () => {
      for (const m of sends) {
        await new Promise((r) => setTimeout(r, 30));
        s.write(m);
      }
      setTimeout(() => s.destroy(), settleMs);
    });
  });
}

test('banner, auth, api replies and exit byte for byte as FreeSWITCH 1.10.12', async () => {
  const c = await startCluster({ nodes: ['freeswitch01'] });
  try {
    const { ports, addr } = c;
    const out = await talk(ports.freeswitch01, addr.freeswitch01, [
      'auth ClueCon\n\n',
      'api sofia status\n\n',
      'api switchname\n\n',
      'api show channels count\n\n',
      'api nosuchcommand\n\n',
      'api sofia status profile nosuch\n\n',
      'exit\n\n',
    ]);
    const expected =
      'Content-Type: auth/request\n\n' +
      'Content-Type: command/reply\nReply-Text: +OK accepted\n\n' +
      'Content-Type: api/response\nContent-Length: 388\n\n' +
      '                     Name\t   Type\t                                      Data\tState\n' +
      '='.repeat(97) +
      '\n' +
      '                 internal\tprofile\t             sip:mod_sofia@127.0.0.11:5060\tRUNNING (0)\n' +
      '='.repeat(97) +
      '\n1 profile 0 aliases\n' +
      'Content-Type: api/response\nContent-Length: 12\n\nfreeswitch01' +
      'Content-Type: api/response\nContent-Length: 10\n\n\n0 total.\n' +
      'Content-Type: api/response\nContent-Length: 38\n\n-ERR nosuchcommand Command not found!\n' +
      'Content-Type: api/response\nContent-Length: 17\n\nInvalid Profile!\n' +
      'Content-Type: command/reply\nReply-Text: +OK bye\n\n' +
      'Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n';
    assert.equal(out, expected);

    const bad = await talk(ports.freeswitch01, addr.freeswitch01, ['auth WrongPassword\n\n']);
    assert.equal(
      bad,
      'Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: -ERR invalid\n\n' +
        'Content-Type: text/disconnect-notice\nContent-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n',
    );

    const early = await talk(ports.freeswitch01, addr.freeswitch01, [
      'api status\n\n',
      'auth ClueCon\n\n',
      'api switchname\n\n',
    ]);
    assert.ok(
      early.startsWith(
        'Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: -ERR command not found\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\nContent-Type: api/response\nContent-Length: 12\n\nfreeswitch01',
      ),
    );

    const xml = await talk(ports.freeswitch01, addr.freeswitch01, [
      'auth ClueCon\n\n',
      'api sofia xmlstatus\n\n',
      'api sofia global standby on\n\n',
      'api fsctl recover\n\n',
      'api sofia recover\n\n',
    ]);
    assert.ok(
      xml.includes(
        'Content-Length: 201\n\n<?xml version="1.0" encoding="ISO-8859-1"?>\n<profiles>\n<profile>\n<name>internal</name>',
      ),
    );
    assert.ok(xml.includes('Content-Length: 21\n\n+OK Global standby on'));
    assert.ok(xml.includes('Content-Length: 36\n\n+OK 0 session(s) recovered in total\n'));
    assert.ok(xml.includes('Content-Length: 21\n\nNo calls to recover.\n'));

    const bg = await talk(ports.freeswitch01, addr.freeswitch01, [
      'auth ClueCon\n\n',
      'event plain BACKGROUND_JOB\n\n',
      'bgapi switchname\n\n',
    ]);
    assert.match(bg, /Reply-Text: \+OK event listener enabled plain\n\n/);
    assert.match(bg, /Reply-Text: \+OK Job-UUID: ([0-9a-f-]{36})\nJob-UUID: \1\n\n/);
    assert.match(
      bg,
      /Content-Type: text\/event-plain\n\nEvent-Name: BACKGROUND_JOB\n[\s\S]*Job-Command: switchname\nContent-Length: 12\n\nfreeswitch01$/,
    );

    // fsctl crash: no reply at all, the socket just closes
    const crash = await talk(ports.freeswitch01, addr.freeswitch01, ['auth ClueCon\n\n', 'api fsctl crash\n\n'], 300);
    assert.equal(crash, 'Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n');
  } finally {
    await c.stop();
  }
});

test('recovery semantics: fsctl recover takes every foreign row (hostname ignored) and deletes the unrecoverable ones', async () => {
  const c = await startCluster({ nodes: ['fs1', 'fs2'] });
  try {
    await c.sims.fs1.answerCalls(5);
    // the real hazard: fs1 alive, fs2 recovers, fs1's calls are stolen
    assert.equal(await c.sims.fs2.api('fsctl recover'), '+OK 5 session(s) recovered in total\n');
    await c.sims.fs2.answerCalls(1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await c.sims.fs2.ownCalls()).length, 6);
    // profile down: rows deleted anyway
    await c.sims.fs2.crash();
    await c.sims.fs1.api('sofia profile internal stop');
    assert.equal(await c.sims.fs1.api('fsctl recover'), '+OK 0 session(s) recovered in total\n');
    assert.equal(await c.sims.fs1.api('show calls count'), '\n0 total.\n');
  } finally {
    await c.stop();
  }
});

test("simctl bridged / conference: rows shaped like the real ones, ties intact, this node's core, switchname and addresses", async () => {
  const { startCluster } = await import('../helpers/cluster');
  const { groupRows } = await import('../../src/core/groups');
  const c = await startCluster({ nodes: ['freeswitch01'] });
  try {
    const sim = c.sims.freeswitch01;
    const legs = (await sim.api('simctl bridged 4'))!.trim().split('\n');
    const members = (await sim.api('simctl conference 5'))!.trim().split('\n');
    assert.equal(legs.length, 8);
    assert.equal(members.length, 5);
    const { withClient } = await import('../helpers/pg');
    const rows = (
      await withClient(c.url, (q) => q.query('select uuid, runtime_uuid, hostname, metadata from recovery'))
    ).rows;
    assert.equal(new Set(rows.map((r) => r.uuid)).size, 13, 'every uuid new');
    const facts = rows.map((r, i) => {
      const tag = (t: string) => [...String(r.metadata).matchAll(new RegExp(`<${t}>([^<]*)</`, 'g'))].map((m) => m[1]);
      return {
        ctid: `(0,${i})`,
        uuid: r.uuid,
        profile: 'internal',
        technology: 'sofia',
        legs: [...tag('signal_bond'), ...tag('bridge_to')].filter((u) => u !== r.uuid),
        conference: tag('conference_uuid')[0] ?? null,
        bytes: 1,
      };
    });
    assert.deepEqual(
      groupRows(facts)
        .map((g) => g.rows.length)
        .sort(),
      [2, 2, 2, 2, 5],
    );
    for (const r of rows) {
      assert.equal(r.runtime_uuid, sim.coreUuid);
      assert.ok(r.metadata.startsWith(`<cdr core-uuid="${sim.coreUuid}" switchname="freeswitch01">`));
      assert.ok(!r.metadata.includes('127.0.0.22'), "the B legs' far end is the far end too");
      assert.ok(!r.metadata.includes('76a5fbca') && !r.metadata.includes('e72933f1'), 'no template core uuid left');
    }
    const callIds = rows.map((r) => /<sip_call_id>([^<]*)</.exec(r.metadata)![1]);
    assert.equal(new Set(callIds).size, 13, 'every leg its own SIP dialog');
  } finally {
    await c.stop();
  }
});

test('simctl call / bridged / conference uuids=…: the caller names the legs (bridged legs still tied to each other)', async () => {
  const { randomUUID } = await import('node:crypto');
  const c = await startCluster({ nodes: ['freeswitch01'] });
  try {
    const sim = c.sims.freeswitch01;
    const ask = async (cmd: string, n: number) => {
      const want = Array.from({ length: n }, () => randomUUID());
      assert.deepEqual((await sim.api(`${cmd} uuids=${want.join(',')}`))!.trim().split('\n'), want, cmd);
      return want;
    };
    await ask('simctl call 2', 2);
    const [a, b] = await ask('simctl bridged 1', 2);
    const members = await ask('simctl conference 3', 3);
    const { withClient } = await import('../helpers/pg');
    const rows = (await withClient(c.url, (q) => q.query('select uuid, metadata from recovery'))).rows as Array<{
      uuid: string;
      metadata: string;
    }>;
    assert.equal(rows.length, 7);
    const md = (u: string) => rows.find((r) => r.uuid === u)!.metadata;
    assert.ok(md(a).includes(`>${b}<`) && md(b).includes(`>${a}<`), 'each bridged leg names the other');
    const conf = (u: string) => /<conference_uuid>([^<]+)</.exec(md(u))?.[1];
    assert.ok(conf(members[0]) && members.every((m) => conf(m) === conf(members[0])), 'one conference');
  } finally {
    await c.stop();
  }
});

test('23.6 (chaos: a zombie call) a BYE heard while the SQL queue is slow, after a recover and before its re-track: the channel is hung up and never tracked again', async () => {
  const c = await startCluster({ nodes: ['fs1', 'fs2'], retrackDelayMs: 300 });
  const { Client } = await import('pg');
  const lock = new Client({ connectionString: c.url });
  try {
    const [x] = await c.sims.fs1.answerCalls(1);
    await c.sims.fs1.crash();
    assert.equal(await c.sims.fs2.api('fsctl recover'), '+OK 1 session(s) recovered in total\n');
    // a busy database: every statement from now on waits (the BYE's untrack, then the re-track behind it)
    await lock.connect();
    await lock.query('begin');
    await lock.query('lock table recovery in access exclusive mode');
    const bye = c.sims.fs2.bye(x);
    await new Promise((r) => setTimeout(r, 500)); // the re-track's moment has passed
    await lock.query('commit');
    assert.equal((await bye).here, true, 'fs2 carried it');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(
      await c.sims.fs2.ownCalls(),
      [],
      'no row of the ended call (a zombie every later takeover carries)',
    );
    assert.equal(await c.sims.fs2.api(`uuid_exists ${x}`), 'false', 'no channel');
  } finally {
    await lock.end().catch(() => undefined);
    await c.stop();
  }
});
