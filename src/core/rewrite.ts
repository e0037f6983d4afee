/**
 * Rewrite one recovery row's metadata (FreeSWITCH's XML CDR of the channel) so another node can own it:
 * the failed node's switchname (the <cdr switchname="..."> attribute) and each of its addresses become
 * the adopting node's. Pure: no I/O.
 *
 * Values inside <variables> are URL-encoded by FreeSWITCH (an address shows up as %40127.0.0.11%3A5060);
 * everything else is plain XML text. Each text piece is decoded into units (one unit = one decoded
 * character, remembering the bytes it came from), whole addresses are matched on the decoded text, and
 * only the matched units are replaced, re-encoded the way FreeSWITCH encodes. Every other byte stays
 * exactly as it was. A row that does not parse before or after, or that still holds a failed-node
 * address anywhere after the rewrite, is reported and left alone.
 */
import { decodeEntity, escapeXml, pieceProblem, TOKEN, XmlChecker } from './xml';

export interface RewriteSpec {
  fromSwitchname: string;
  toSwitchname: string;
  /** failed node address -> adopting node address */
  addresses: Array<[string, string]>;
  /** profile name on the failed node -> on the adopting node, where they differ (nodes.<n>.profiles) */
  profiles?: Array<[string, string]>;
}

/** The variables naming a call's SIP profile: sofia recover rebuilds the channel on recovery_profile_name. */
const PROFILE_VARIABLES = new Set(['recovery_profile_name', 'sofia_profile_name', 'sip_profile_name']);

export type RewriteResult = { ok: true; metadata: string; replaced: number } | { ok: false; reason: string };

/** FreeSWITCH's switch_url_encode: these characters (and control/non-ASCII bytes) become %XX, upper-case. */
const FS_URL_UNSAFE = new Set('\r\n "#%&+:;<=>?@[\\]^`{|}'.split(''));

export function fsUrlEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (byte < 32 || byte > 126 || FS_URL_UNSAFE.has(c)) out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
    else out += c;
  }
  return out;
}

interface Units {
  decoded: string;
  /** raw offset where unit i starts; starts[decoded.length] = raw length */
  starts: number[];
}

function decodeUnits(raw: string, mode: 'url' | 'xml'): Units {
  const starts: number[] = [];
  let decoded = '';
  let i = 0;
  while (i < raw.length) {
    starts.push(i);
    const c = raw[i];
    if (mode === 'url' && c === '%' && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      decoded += String.fromCharCode(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 3;
      continue;
    }
    if (c === '&') {
      const semi = raw.indexOf(';', i);
      const ent = semi > i && semi - i < 12 ? decodeEntity(raw.slice(i + 1, semi)) : null;
      if (ent !== null && ent.length === 1) {
        decoded += ent;
        i = semi + 1;
        continue;
      }
    }
    decoded += c;
    i++;
  }
  starts.push(raw.length);
  return { decoded, starts };
}

function addressPattern(addr: string): RegExp {
  const body = addr.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // a whole address: not glued to another address/name character on either side
  const inside = addr.includes(':') ? '0-9A-Za-z.:' : '0-9A-Za-z.';
  const after = addr.includes(':') ? '0-9A-Za-z:' : '0-9A-Za-z';
  return new RegExp(`(?<![${inside}])${body}(?![${after}]|\\.[0-9A-Za-z])`, addr.includes(':') ? 'gi' : 'g');
}

interface Match {
  start: number;
  end: number;
  to: string;
}

function findAddresses(decoded: string, patterns: Pattern[]): Match[] {
  const found: Match[] = [];
  for (const { re, to } of patterns) {
    re.lastIndex = 0;
    for (let m = re.exec(decoded); m; m = re.exec(decoded))
      found.push({ start: m.index, end: m.index + m[0].length, to });
  }
  found.sort((a, b) => a.start - b.start || b.end - a.end);
  const kept: Match[] = [];
  for (const m of found) if (!kept.length || m.start >= kept[kept.length - 1].end) kept.push(m);
  return kept;
}

/** Replace the whole addresses found in one text piece; returns the new raw text and how many were replaced. */
function rewritePiece(raw: string, mode: 'url' | 'xml', patterns: Pattern[]): [string, number] {
  // fast path: digits, letters and dots are never escaped, so an address's longest such run must be there
  if (!patterns.some((p) => raw.includes(p.needle) || (p.ignoreCase && raw.toLowerCase().includes(p.needle))))
    return [raw, 0];
  const plain = mode === 'url' ? !/[%&]/.test(raw) : !raw.includes('&');
  const units = plain ? null : decodeUnits(raw, mode);
  const decoded = units ? units.decoded : raw;
  const matches = findAddresses(decoded, patterns);
  if (!matches.length) return [raw, 0];
  let out = '';
  let pos = 0;
  for (const m of matches) {
    const rs = units ? units.starts[m.start] : m.start;
    const re = units ? units.starts[m.end] : m.end;
    out += raw.slice(pos, rs) + (mode === 'url' ? fsUrlEncode(m.to) : escapeXml(m.to));
    pos = re;
  }
  return [out + raw.slice(pos), matches.length];
}

const ATTR = /(\s+)([^\s=>/]+)(\s*=\s*)("([^"]*)"|'([^']*)')/g;

/** An element with no attributes holding only text, closed by itself: <name>text</name>. */
const SIMPLE = /<([A-Za-z_][\w.:-]*)>([^<]*)<\/\1>/y;

/** %XX that decodes to a letter, a digit or a dot: what could spell an address in escapes. */
const ESCAPED_NAME_CHAR = /%(2[eE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA])/;

/** One address of the failed node, ready to be found and replaced. */
export interface Pattern {
  /** the whole address, never a part of a longer one */
  re: RegExp;
  /** what replaces it */
  to: string;
  /** its longest run of characters that are never escaped: a piece without it cannot hold the address */
  needle: string;
  /** IPv6: hex digits in either case */
  ignoreCase: boolean;
  /** the address itself */
  from: string;
}

export function compilePatterns(spec: RewriteSpec): Pattern[] {
  return spec.addresses
    .filter(([a, b]) => a !== b)
    .map(([a, b]): Pattern => {
      const v6 = a.includes(':');
      const needle = (a.match(/[0-9A-Za-z.]+/g) ?? [a]).reduce((x, y) => (y.length > x.length ? y : x));
      return { re: addressPattern(a), to: b, needle: v6 ? needle.toLowerCase() : needle, ignoreCase: v6, from: a };
    });
}

/**
 * One pass: each token is checked for well-formedness (XmlChecker) and rewritten. Every byte outside
 * the replaced values is copied unchanged, and each replaced value is checked to be markup-free text
 * for the place it stands in (pieceProblem), so the result has exactly the input's markup: it parses
 * exactly when the input does. test/core/rewrite.test.ts re-parses every result to hold this.
 */
export function rewriteMetadata(metadata: string, spec: RewriteSpec, patterns = compilePatterns(spec)): RewriteResult {
  const check = new XmlChecker();
  // the result is the input with these spans replaced (most tokens are unchanged: no copy of them is built)
  const edits: Array<[number, number, string]> = [];
  let replaced = 0;
  let inVariables = false;
  let element = '';
  const profiles = new Map((spec.profiles ?? []).filter(([a, b]) => a !== b));
  let seenRoot = false;
  let badPiece: string | null = null;
  /** One text node inside `name`, at `start`: checked, then its profile name or addresses replaced. */
  const textNode = (text: string, start: number, name: string, url: boolean): string | null => {
    const problem = check.text(text, start);
    if (problem) return problem;
    if (inVariables && profiles.size && PROFILE_VARIABLES.has(name)) {
      const to = profiles.get(decodeUnits(text, 'url').decoded);
      if (to !== undefined) {
        edits.push([start, start + text.length, fsUrlEncode(to)]);
        replaced++;
        return null;
      }
    }
    const [out, n] = rewritePiece(text, url ? 'url' : 'xml', patterns);
    if (n) {
      badPiece ??= pieceProblem(out, null);
      edits.push([start, start + text.length, out]);
      replaced += n;
    }
    return null;
  };
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < metadata.length) {
    const at = TOKEN.lastIndex;
    // most of a row is lines like <name>text</name>: one match instead of three tokens, with the same checks
    // (an open tag without attributes inside the root, text without a stray '&', its own close)
    if (check.depth > 0) {
      SIMPLE.lastIndex = at;
      const e = SIMPLE.exec(metadata);
      if (e) {
        const name = e[1],
          text = e[2],
          start = at + name.length + 2;
        TOKEN.lastIndex = SIMPLE.lastIndex;
        element = ''; // as after its close tag
        if (!text) continue;
        // the text of <variables> itself is URL-encoded too
        const problem = textNode(text, start, name, inVariables || name === 'variables');
        if (problem) return { ok: false, reason: `metadata does not parse as XML (${problem})` };
        continue;
      }
    }
    const m = TOKEN.exec(metadata);
    if (!m) return { ok: false, reason: `metadata does not parse as XML (bad markup at offset ${at})` };
    const tok = m[0],
      close = m[1],
      name = m[2] as string | undefined,
      attrs = m[3],
      selfClose = m[4];
    if (name === undefined) {
      if (tok.charCodeAt(0) === 60 /* < */) {
        const problem = check.markup(tok, at);
        if (problem) return { ok: false, reason: `metadata does not parse as XML (${problem})` };
        continue;
      }
      const problem = textNode(tok, at, element, inVariables);
      if (problem) return { ok: false, reason: `metadata does not parse as XML (${problem})` };
      continue;
    }
    const problem = close ? check.close(name, attrs, selfClose, at) : check.open(name, attrs, selfClose, at);
    if (problem) return { ok: false, reason: `metadata does not parse as XML (${problem})` };
    if (close) {
      if (name === 'variables') inVariables = false;
      element = '';
      continue;
    }
    element = selfClose ? '' : name;
    const isRoot = !seenRoot;
    seenRoot = true;
    if (name === 'variables' && !selfClose) inVariables = true;
    // an attribute without the needle (or an entity that could spell it) holds no address: left as it is
    const touch =
      attrs &&
      ((isRoot && name === 'cdr') ||
        attrs.includes('&') ||
        patterns.some((p) => attrs.includes(p.needle) || (p.ignoreCase && attrs.toLowerCase().includes(p.needle))));
    if (!touch) continue;
    const newAttrs = attrs.replace(
      ATTR,
      (all, sp: string, an: string, eq: string, _q: string, dq?: string, sq?: string) => {
        const value = dq ?? sq ?? '';
        const quote = dq !== undefined ? '"' : "'";
        if (isRoot && name === 'cdr' && an === 'switchname') {
          const decoded = decodeUnits(value, 'xml').decoded;
          if (decoded === spec.fromSwitchname && spec.fromSwitchname !== spec.toSwitchname) {
            replaced++;
            return `${sp}${an}${eq}${quote}${escapeXml(spec.toSwitchname)}${quote}`;
          }
          return all;
        }
        const [text, n] = rewritePiece(value, 'xml', patterns);
        if (!n) return all;
        badPiece ??= pieceProblem(text, quote);
        replaced += n;
        return `${sp}${an}${eq}${quote}${text}${quote}`;
      },
    );
    if (newAttrs !== attrs) edits.push([at + 1 + name.length, at + 1 + name.length + attrs.length, newAttrs]);
  }
  const problem = check.end();
  if (problem) return { ok: false, reason: `metadata does not parse as XML (${problem})` };
  if (badPiece) return { ok: false, reason: `rewritten metadata would not parse as XML (${badPiece})` };
  let out = '';
  let pos = 0;
  for (const [start, end, text] of edits) {
    out += metadata.slice(pos, start) + text;
    pos = end;
  }
  out += metadata.slice(pos);
  const left = leftoverAddress(out, patterns);
  if (left)
    return { ok: false, reason: `address ${left} of the failed node appears where fs-ha cannot rewrite it safely` };
  return { ok: true, metadata: out, replaced };
}

/** Any failed-node address still present anywhere, decoding both URL escapes and XML entities? */
export function leftoverAddress(metadata: string, patterns: Pattern[]): string | null {
  // Sound shortcut: the decoded text can hold an address only if the raw text holds its needle (its longest
  // run of letters, digits and dots) as it is, or holds an escape that decodes to a letter, digit or dot
  // (%2E %30-%39 %41-%5A %61-%7A, or a numeric character reference); named entities decode to none of those.
  const v6 = patterns.some((p) => p.ignoreCase);
  const raw = v6 ? metadata.toLowerCase() : metadata;
  if (!patterns.some((p) => raw.includes(p.needle)) && !ESCAPED_NAME_CHAR.test(metadata) && !metadata.includes('&#'))
    return null;
  const decoded = metadata
    .replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
    .replace(/&([^;&\s]{1,10});/g, (all, e: string) => decodeEntity(e) ?? all);
  const targets = new Set(patterns.map((p) => p.to.toLowerCase()));
  for (const { re, from } of patterns) {
    // an address that is also some other address's replacement may rightly be there now
    if (targets.has(from.toLowerCase())) continue;
    re.lastIndex = 0;
    const m = re.exec(decoded);
    if (m) return m[0];
  }
  return null;
}
