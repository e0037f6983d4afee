/**
 * The one output path of every command: results go to stdout as text for people or as JSON (--json), in
 * one place; log lines go to stderr and syslog through log.ts, never here.
 */
export class Output {
  constructor(
    readonly json: boolean,
    private readonly write: (s: string) => void = (s) => {
      process.stdout.write(s);
    },
  ) {}

  /** A command's result: `data` as JSON with --json, else the human text (one line or a block). */
  result(data: unknown, human: string): void {
    this.write(this.json ? JSON.stringify(data, null, 2) + '\n' : human.endsWith('\n') ? human : human + '\n');
  }

  /**
   * One frame of a view that refreshes (status --watch): for people the screen is cleared and redrawn in
   * place; with --json one compact JSON document per line, for a pipe.
   */
  frame(data: unknown, human: string): void {
    this.write(this.json ? JSON.stringify(data) + '\n' : `\x1b[H\x1b[2J${human.endsWith('\n') ? human : human + '\n'}`);
  }

  /** A progress line for people (a drill's timeline); with --json the result carries the facts instead. */
  line(text: string): void {
    if (!this.json) this.write(text + '\n');
  }
}
