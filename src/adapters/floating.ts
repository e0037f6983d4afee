/**
 * A provider's floating address (a cloud's elastic/reserved IP): where the network carries no gratuitous ARP,
 * the VIP is moved by an API call. fs-ha runs the operator's floating.command when one of its instances becomes
 * MASTER (claim: beside the takeover, so the recovered calls' re-INVITEs wait for nothing but FreeSWITCH's own
 * retransmissions) and when it leaves MASTER (BACKUP, FAULT, STOP: most providers need nothing then, since the
 * new MASTER's claim moves the address; a command that detaches must detach it from this node only).
 * Facts in the environment, never on the command line; bounded by floating.timeout_ms (its process group killed).
 */
import type { Config } from '../config';
import { errorMessage } from '../errors';
import { log } from '../log';
import { runBounded } from './fence';

/** Start the command for this transition, or null when none is configured; the promise never rejects. */
export function startFloating(cfg: Config, instance: string, state: string): Promise<void> | null {
  if (!cfg.floating.command) return null;
  const address = cfg.floating.addresses[instance] ?? '';
  const ctx = { node: cfg.node, instance, state, address };
  const t0 = Date.now();
  return runBounded(
    'floating.command',
    cfg.floating.command,
    { FSHA_INSTANCE: instance, FSHA_STATE: state, FSHA_ADDRESS: address, FSHA_NODE: cfg.node },
    cfg.floating.timeoutMs,
  ).then(
    () =>
      log(
        'info',
        `floating address ${address || '(none listed)'} of ${instance}: ${state === 'MASTER' ? 'claimed' : 'released'} by floating.command in ${Date.now() - t0} ms`,
        ctx,
      ),
    // ERROR: on MASTER the far ends' answers may not reach this node until the address is moved by hand
    (e) =>
      log(
        'error',
        `floating address ${address || '(none listed)'} of ${instance} NOT ${state === 'MASTER' ? 'claimed' : 'released'}: ${errorMessage(e)}`,
        ctx,
      ),
  );
}
