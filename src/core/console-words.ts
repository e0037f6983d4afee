/**
 * What an operator types after `fsha` in FreeSWITCH's console (fs_cli), read into one action: pure, so every
 * reading and refusal has a unit test. The console cannot answer a prompt, so an action that would ask for
 * confirmation (a drain) does nothing without --yes and says so.
 */
export type ConsoleAction =
  | { kind: 'status' }
  | { kind: 'history'; last: number }
  | { kind: 'takeover'; from: string; to?: string }
  | { kind: 'drain'; from: string; to?: string; yes: boolean }
  | { kind: 'help' }
  | { kind: 'usage'; message: string };

export const CONSOLE_HELP = [
  'fsha                          the cluster at a glance',
  "fsha takeover NODE [--to A,B] take a dead node's calls over (refused while it is alive)",
  'fsha drain NODE [--to A,B]    the plan of emptying a live node; with --yes, do it',
  'fsha history [K]              the last K takeovers and drains (5)',
];

const NODE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function readConsoleWords(words: string[]): ConsoleAction {
  const [verb = 'status', ...rest] = words.filter((w) => w !== '');
  const flags = new Map<string, string | true>();
  const args: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const w = rest[i];
    if (w === '--yes') flags.set('yes', true);
    else if (w === '--to') {
      if (!rest[i + 1]) return { kind: 'usage', message: '--to needs a node list (--to A,B)' };
      flags.set('to', rest[++i]);
    } else if (w.startsWith('--to=')) flags.set('to', w.slice(5));
    else if (w.startsWith('-')) return { kind: 'usage', message: `unknown option ${w} (fsha help)` };
    else args.push(w);
  }
  const to = typeof flags.get('to') === 'string' ? (flags.get('to') as string) : undefined;
  if (to !== undefined && !to.split(',').every((n) => NODE.test(n)))
    return { kind: 'usage', message: `--to ${to}: not a list of node names` };
  const one = (what: string): string | ConsoleAction => {
    if (args.length !== 1)
      return { kind: 'usage', message: `usage: fsha ${what} NODE${what === 'drain' ? ' [--yes]' : ''} [--to A,B]` };
    if (!NODE.test(args[0])) return { kind: 'usage', message: `${args[0]}: not a node name` };
    return args[0];
  };
  switch (verb) {
    case 'status':
      return args.length || flags.size ? { kind: 'usage', message: 'usage: fsha [status]' } : { kind: 'status' };
    case 'help':
      return { kind: 'help' };
    case 'history': {
      if (flags.size || args.length > 1 || (args[0] !== undefined && !/^\d{1,3}$/.test(args[0])))
        return { kind: 'usage', message: 'usage: fsha history [K]' };
      return { kind: 'history', last: Math.max(1, Number(args[0] ?? 5)) };
    }
    case 'takeover': {
      if (flags.has('yes'))
        return { kind: 'usage', message: 'fsha takeover needs no --yes: it is refused while the node is alive' };
      const from = one('takeover');
      return typeof from === 'string' ? { kind: 'takeover', from, to } : from;
    }
    case 'drain': {
      const from = one('drain');
      return typeof from === 'string' ? { kind: 'drain', from, to, yes: flags.has('yes') } : from;
    }
    default:
      return { kind: 'usage', message: `unknown word ${verb} (fsha help)` };
  }
}
