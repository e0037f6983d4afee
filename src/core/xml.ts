/**
 * A small strict XML well-formedness checker for FreeSWITCH's XML CDR metadata (~8 KB a row, up to
 * 100k rows per takeover, so it must be fast). It checks what a truncated or corrupted row breaks:
 * one root element, every tag closed in order, attributes quoted and unique, no stray '<' or '&',
 * known entities only. test/core/xml.test.ts cross-checks it against the sax parser.
 */
const XML_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function decodeEntity(entity: string): string | null {
  // entity is the text between & and ;
  if (entity[0] === '#') {
    const hex = entity[1] === 'x' || entity[1] === 'X';
    const digits = entity.slice(hex ? 2 : 1);
    if (!(hex ? /^[0-9A-Fa-f]+$/ : /^[0-9]+$/).test(digits)) return null;
    const code = parseInt(digits, hex ? 16 : 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : null;
  }
  return XML_ENTITIES[entity] ?? null;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** One token: comment | PI | CDATA | doctype | tag (groups: close, name, attrs, selfClose) | text. */
export const TOKEN =
  /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<!\[CDATA\[[\s\S]*?\]\]>|<!DOCTYPE[^>]*>|<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[^\s=>/<"']+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>|[^<]+/y;
const ATTR_NAME = /\s+([^\s=>/<"']+)\s*=/g;
const BAD_AMP = /&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);)/;

/**
 * Well-formedness, one token at a time (the rewrite feeds it the tokens it walks anyway, so a row is
 * checked and rewritten in one pass). Each method returns a problem or null.
 */
export class XmlChecker {
  private readonly stack: string[] = [];
  private roots = 0;

  markup(tok: string, at: number): string | null {
    if (tok.startsWith('<?') && at > 0 && /^<\?xml[\s?]/.test(tok))
      return `XML declaration not at the start (offset ${at})`;
    return null;
  }

  text(tok: string, at: number): string | null {
    if (tok.includes('&') && BAD_AMP.test(tok)) return `stray '&' in text near offset ${at}`;
    if (this.stack.length === 0 && tok.trim() !== '') return `text outside the root element at offset ${at}`;
    return null;
  }

  close(name: string, attrs: string, selfClose: string, at: number): string | null {
    if (attrs || selfClose) return `malformed closing tag </${name}> at offset ${at}`;
    const open = this.stack.pop();
    if (open !== name)
      return open ? `</${name}> closes <${open}> at offset ${at}` : `</${name}> without an open tag at offset ${at}`;
    return null;
  }

  open(name: string, attrs: string, selfClose: string, at: number): string | null {
    if (attrs) {
      if (attrs.includes('&') && BAD_AMP.test(attrs)) return `stray '&' in an attribute of <${name}> at offset ${at}`;
      // a duplicate needs two attributes, so at least two '=' (one '=' is one attribute: nothing to compare)
      if (attrs.indexOf('=') !== attrs.lastIndexOf('=')) {
        const seen = new Set<string>();
        ATTR_NAME.lastIndex = 0;
        for (let a = ATTR_NAME.exec(attrs); a; a = ATTR_NAME.exec(attrs)) {
          if (seen.has(a[1])) return `duplicate attribute ${a[1]} on <${name}> at offset ${at}`;
          seen.add(a[1]);
        }
      }
    }
    if (this.stack.length === 0 && ++this.roots > 1) return `second root element <${name}> at offset ${at}`;
    if (!selfClose) this.stack.push(name);
    return null;
  }

  /** inside the root element (an element opened here is not a second root) */
  get depth(): number {
    return this.stack.length;
  }

  end(): string | null {
    if (this.stack.length) return `unclosed <${this.stack[this.stack.length - 1]}> (truncated?)`;
    if (this.roots === 0) return 'no root element';
    return null;
  }
}

/** Can this text stand where a text node (quote: null) or a quoted attribute value was, without changing the markup? */
export function pieceProblem(text: string, quote: '"' | "'" | null): string | null {
  if (text.includes('<')) return "a '<' inside a value";
  if (text.includes('&') && BAD_AMP.test(text)) return "a stray '&' inside a value";
  if (quote && text.includes(quote)) return 'a quote inside an attribute value';
  return null;
}

export function xmlProblem(text: string): string | null {
  const check = new XmlChecker();
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < text.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(text);
    if (!m) return `bad markup at offset ${at}`;
    const tok = m[0],
      name = m[2] as string | undefined;
    const problem =
      name === undefined
        ? tok[0] === '<'
          ? check.markup(tok, at)
          : check.text(tok, at)
        : m[1]
          ? check.close(name, m[3], m[4], at)
          : check.open(name, m[3], m[4], at);
    if (problem) return problem;
  }
  return check.end();
}
