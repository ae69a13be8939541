/**
 * Text streams cut into lines: worker output (prefixed per line on the console) and the
 * launchers' control connections (one JSON message per line).
 */

/** Cuts a text stream into lines; a partial line waits for its end (or for `flush`). */
export class LineSplitter {
  private partial = '';
  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.onLine(line);
  }

  /** Characters waiting for their newline. */
  get pendingLength(): number {
    return this.partial.length;
  }

  /** Emit what is left (a last line without a newline). */
  flush(): void {
    if (this.partial !== '') this.onLine(this.partial);
    this.partial = '';
  }
}
