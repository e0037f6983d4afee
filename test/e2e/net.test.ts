/** The lab's refusal to start on a machine that routes its subnets, and the move of template addresses. Pure. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GUARD_PROTO, MGMT, SERVICE, fromTemplate, routeConflicts, type Subnet } from './net';

// `ip -4 -o route show table all` on this very machine: eth0 sits in 192.0.2.0/24, the templates' service net
const HERE = `default via 192.0.2.1 dev eth0
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.2
broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.2`;

const net = (cidr: string, prefix: string): Subnet => ({ name: 'service', cidr, prefix, template: '192.0.2' });

test("a lab on the templates' own subnet is refused here, naming the route that conflicts", () => {
  const hits = routeConflicts(HERE, [net('192.0.2.0/24', '192.0.2')]);
  assert.ok(hits.length >= 1);
  assert.match(hits[0], /service subnet 192\.0\.2\.0\/24 is already routed here \(192\.0\.2\.0\/24 dev eth0/);
});

test("the default route, loopback and the lab's own guards are no conflict; a wider or narrower route is", () => {
  assert.deepEqual(routeConflicts(HERE, [SERVICE, MGMT]), []);
  assert.deepEqual(routeConflicts(`unreachable ${SERVICE.cidr} proto ${GUARD_PROTO} scope link`, [SERVICE]), []);
  assert.equal(routeConflicts(`unreachable ${SERVICE.cidr} proto static`, [SERVICE]).length, 1, 'not ours: a conflict');
  assert.equal(
    routeConflicts('198.18.0.0/15 via 10.1.1.1 dev eth1', [SERVICE, MGMT]).length,
    2,
    'a wider route covers both',
  );
  assert.equal(
    routeConflicts(`${SERVICE.prefix}.64/26 dev wg0 scope link`, [SERVICE, MGMT]).length,
    1,
    'a part of one',
  );
});

test("template addresses move into the lab's subnets with their host part; other numbers stay", () => {
  const t =
    'database: postgres://fsha@198.51.100.5:5432/x\n  a: { addresses: [192.0.2.100], esl: { host: 198.51.100.11 } }\n$VIP01=192.0.2.101/24\nv 1192.0.2.1 10.192.0.2.7';
  assert.equal(
    fromTemplate(t),
    `database: postgres://fsha@${MGMT.prefix}.5:5432/x\n  a: { addresses: [${SERVICE.prefix}.100], esl: { host: ${MGMT.prefix}.11 } }\n$VIP01=${SERVICE.prefix}.101/24\nv 1192.0.2.1 10.192.0.2.7`,
  );
});
