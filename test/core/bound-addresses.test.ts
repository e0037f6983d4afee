import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boundAddressProblem } from '../../src/core/bound-addresses';

test("bound addresses: what the calls bind must be among the node's addresses (IPv6 in FreeSWITCH's form); a VIP farm's node that binds its VIP but lists its fixed address is named, with what to list", () => {
  assert.equal(boundAddressProblem('fs1', ['192.0.2.11'], ['192.0.2.11']), null);
  assert.equal(boundAddressProblem('fs1', ['192.0.2.11', '2001:db8::11'], ['2001:DB8:0:0::11', '192.0.2.11']), null);
  assert.equal(boundAddressProblem('fs1', ['192.0.2.11'], []), null, 'no call: nothing to say');
  assert.equal(boundAddressProblem('fs1', ['192.0.2.11'], ['not-an-address']), null);
  const p = boundAddressProblem('freeswitch01', ['192.0.2.11'], ['192.0.2.101', '192.0.2.101']);
  assert.match(
    p!,
    /^freeswitch01's calls bind 192\.0\.2\.101 \(local_media_ip \/ sip_local_network_addr of its rows\), which nodes\.freeswitch01\.addresses \[192\.0\.2\.11\] does not list: a takeover leaves its calls on that address, which works only while their adopter holds it; list what its profiles bind/,
  );
});
