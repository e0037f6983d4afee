/**
 * make chaos [ROUNDS=20] [SEED=1] [TOPOLOGY=pair|farm|proxy] [RATE=5] [HOLD=5000-30000] [FAULTS=crash,freeze,...]
 * Exit status: 0 when no call was lost and no invariant broken, 1 otherwise, 2 on bad arguments.
 */
import { DEFAULTS, runChaos } from './run';
import { FAULTS } from './nemesis';

function fail(msg: string): never {
  process.stderr.write(`chaos: ${msg}\n`);
  process.exit(2);
}

const env = process.env;
const int = (name: string, dflt: number): number => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  if (!/^\d+$/.test(v)) fail(`${name} must be a whole number, not "${v}"`);
  return Number(v);
};
const topology = env.TOPOLOGY || 'pair';
if (topology !== 'pair' && topology !== 'farm' && topology !== 'proxy')
  fail(`TOPOLOGY must be pair, farm or proxy, not "${topology}"`);
const hold = (env.HOLD || `${DEFAULTS.holdMinMs}-${DEFAULTS.holdMaxMs}`).split('-').map(Number);
if (hold.length !== 2 || hold.some((x) => !Number.isFinite(x) || x <= 0) || hold[0] > hold[1])
  fail(`HOLD must be MIN-MAX in ms, not "${env.HOLD}"`);
const kinds = env.FAULTS ? env.FAULTS.split(',') : undefined;
for (const k of kinds ?? [])
  if (!FAULTS.some((f) => f.kind === k)) fail(`unknown fault "${k}" (${FAULTS.map((f) => f.kind).join(', ')})`);
const seed = int('SEED', Date.now() % 100000);
const rounds = int('ROUNDS', 20);

runChaos({
  ...DEFAULTS,
  rate: Number(env.RATE || DEFAULTS.rate),
  holdMinMs: hold[0],
  holdMaxMs: hold[1],
  rounds,
  seed,
  topology,
  kinds,
  out: env.OUT || `chaos-${topology}-${seed}.json`,
  say: (l) => process.stdout.write(`${l}\n`),
}).then(
  (r) => process.exit(r.aborted || r.judgement.unexplained.length || r.judgement.violations.length ? 1 : 0),
  (e) => fail((e as Error).message),
);
