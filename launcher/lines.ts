/**
 * Byte streams cut into lines: worker output (prefixed per line on the console) and the
 * launchers' control connections (one JSON message per line).
 *
 * - Bytes are decoded by one streaming UTF-8 decoder per stream, so a character whose bytes
 *   arrive in two chunks is decoded whole (decoding each chunk alone turns it into U+FFFD).
 * - Each character is looked at once: the text after the last line end is kept as a list of
 *   pieces and joined only when its line ends, never re-split (quadratic on a long line).
 * - A line longer than `maxLine` UTF-16 code units comes out in pieces of `maxLine` (the last one
 *   shorter), cut between characters (never inside a surrogate pair, i.e. never inside a UTF-8
 *   character): the memory held for a line without an end is bounded.
 * - With `carriageReturn`, a lone `\r` ends a line too, as in Python's universal newlines
 *   (torchrun's tail of worker logs): progress bars that redraw with `\r` show each state as
 *   a line. Of the `\r`-ended lines that arrive in one chunk, only the last is emitted: the
 *   others were redrawn over before anyone could see them. `\r\n` is one line end.
 */
import { StringDecoder } from 'node:string_decoder';

export interface LineSplitterOptions {
  /** Longest line emitted whole, UTF-16 code units; longer ones come out in pieces. Default: no limit. */
  readonly maxLine?: number;
  /** A lone `\r` ends a line (worker output); default false (`\n` only: control messages). */
  readonly carriageReturn?: boolean;
}

const LF = 10;
const CR = 13;

export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private readonly maxLine: number;
  private readonly carriageReturn: boolean;
  /** The text since the last line end, in the order it came. */
  private pieces: string[] = [];
  private pending = 0;
  /** The last chunk ended with `\r`: a `\n` starting the next one belongs to it. */
  private afterCr = false;
  /** In the chunk being pushed: where the next `\r` is (-1: none left, -2: not looked for yet). */
  private cr = -2;
  /** Pieces of the line in progress went out already (it was longer than `maxLine`). */
  private continued = false;

  constructor(
    private readonly onLine: (line: string) => void,
    opts: LineSplitterOptions = {},
  ) {
    this.maxLine = opts.maxLine ?? Infinity;
    this.carriageReturn = opts.carriageReturn ?? false;
    if (!(this.maxLine >= 2)) throw new RangeError(`maxLine must be at least 2, got ${this.maxLine}`);
  }

  /** Take a chunk of bytes (decoded as UTF-8, characters across chunks kept whole) or of text. */
  push(chunk: Buffer | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    if (text.length === 0) return;
    let start = 0;
    if (this.afterCr && text.charCodeAt(0) === LF) start = 1;
    this.afterCr = false;
    this.cr = -2;
    // The `\r`-ended line seen last in this chunk, held back until we know nothing follows it.
    let redraw: string | undefined;
    for (;;) {
      const end = this.nextEnd(text, start);
      if (end < 0) break;
      const line = this.take(text.slice(start, end));
      const code = text.charCodeAt(end);
      if (code === CR && text.charCodeAt(end + 1) !== LF) {
        redraw = line;
        start = end + 1;
        if (start === text.length) this.afterCr = true;
        continue;
      }
      redraw = undefined;
      this.emit(line);
      start = code === CR ? end + 2 : end + 1;
    }
    if (start < text.length) {
      redraw = undefined;
      this.add(text.slice(start));
    }
    if (redraw !== undefined) this.emit(redraw);
  }

  /** Code units waiting for their line end (less than `maxLine`). */
  get pendingLength(): number {
    return this.pending;
  }

  /** Emit what is left (a last line without a line end). */
  flush(): void {
    const rest = this.decoder.end();
    if (rest !== '') this.add(rest);
    if (this.pending > 0) this.emit(this.take(''));
    this.afterCr = false;
  }

  private nextEnd(text: string, from: number): number {
    const lf = text.indexOf('\n', from);
    if (!this.carriageReturn) return lf;
    // The next `\r` is looked for again only once passed: searching the rest of a chunk that has
    // none for every line would make a chunk of short lines quadratic.
    if (this.cr !== -1 && this.cr < from) this.cr = text.indexOf('\r', from);
    const cr = this.cr;
    return cr < 0 ? lf : lf < 0 ? cr : Math.min(cr, lf);
  }

  /** The pending text plus `tail`, as one line; pending is then empty. */
  private take(tail: string): string {
    if (this.pending === 0) return tail;
    this.pieces.push(tail);
    const line = this.pieces.join('');
    this.pieces = [];
    this.pending = 0;
    return line;
  }

  /** A whole line: in pieces of `maxLine` if it is longer. */
  private emit(line: string): void {
    const continued = this.continued;
    this.continued = false;
    // The line's pieces are out already and nothing came after the last one.
    if (line === '' && continued) return;
    if (line.length <= this.maxLine) return this.onLine(line);
    const at = this.cutPieces(line);
    if (at < line.length) this.onLine(line.slice(at));
  }

  /** Keep `text` for the line in progress; emit whole pieces of `maxLine` once there are any. */
  private add(text: string): void {
    this.pieces.push(text);
    this.pending += text.length;
    if (this.pending < this.maxLine) return;
    const all = this.pieces.join('');
    const rest = all.slice(this.cutPieces(all));
    this.continued = true;
    this.pieces = rest === '' ? [] : [rest];
    this.pending = rest.length;
  }

  /** Emit the full `maxLine` pieces of `text` from its start; returns where the rest begins. */
  private cutPieces(text: string): number {
    let at = 0;
    while (text.length - at >= this.maxLine) {
      let cut = at + this.maxLine;
      // Not between the two halves of a surrogate pair (one character, 4 bytes in UTF-8).
      if (isHighSurrogate(text.charCodeAt(cut - 1))) cut -= 1;
      this.onLine(text.slice(at, cut));
      at = cut;
    }
    return at;
  }
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
