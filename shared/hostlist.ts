/**
 * Slurm's compressed lists, as its variables carry them:
 *   hostlists      `n[1-2]`, `gpu[01-04,07]`, `rack[1-2]-node[01-02]`, `a,b[3-4]`
 *   tasks per node `2(x2)`, `2,1`, `4(x3),2`   (SLURM_STEP_TASKS_PER_NODE, SLURM_TASKS_PER_NODE)
 * Hosts come out in Slurm's order, which is the order of node ids (SLURM_NODEID) in a step.
 * A malformed list throws a plain Error saying what is wrong; callers name the variable.
 */

/** Most hosts one list may expand to: a guard against `n[0-999999999]`. */
const MAX_HOSTS = 1 << 16;

/** Split `text` at the commas outside brackets. */
function topLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '[') depth += 1;
    else if (c === ']') depth -= 1;
    if (depth < 0 || depth > 1) throw new Error(`unbalanced or nested brackets in ${JSON.stringify(text)}`);
    if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new Error(`unclosed bracket in ${JSON.stringify(text)}`);
  parts.push(text.slice(start));
  return parts;
}

/** `01-04,07` → ['01', '02', '03', '04', '07']: the width of a range's first bound pads it. */
function expandRanges(inside: string, whole: string): string[] {
  const out: string[] = [];
  for (const part of inside.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (m === null) throw new Error(`${JSON.stringify(part)} in ${JSON.stringify(whole)} is not a number or a range a-b`);
    const lo = m[1] as string;
    const hi = m[2] ?? lo;
    const [a, b] = [Number(lo), Number(hi)];
    if (b < a) throw new Error(`range ${part} in ${JSON.stringify(whole)} runs backwards`);
    if (out.length + b - a + 1 > MAX_HOSTS) throw new Error(`${JSON.stringify(whole)} names more than ${MAX_HOSTS} hosts`);
    for (let k = a; k <= b; k++) out.push(String(k).padStart(lo.length, '0'));
  }
  return out;
}

/** One entry without top-level commas: every bracket multiplies, left to right. */
function expandEntry(entry: string, whole: string): string[] {
  let hosts = [''];
  const re = /([^[\]]*)(?:\[([^\]]*)\])?/gy;
  let m: RegExpExecArray | null;
  while (re.lastIndex < entry.length && (m = re.exec(entry)) !== null) {
    const prefix = m[1] ?? '';
    const choices = m[2] === undefined ? [''] : expandRanges(m[2], whole);
    if (hosts.length * choices.length > MAX_HOSTS) throw new Error(`${JSON.stringify(whole)} names more than ${MAX_HOSTS} hosts`);
    hosts = hosts.flatMap((h) => choices.map((c) => h + prefix + c));
  }
  return hosts;
}

/** Every host of a Slurm hostlist, in order. */
export function expandHostlist(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed === '') throw new Error('the host list is empty');
  const hosts: string[] = [];
  for (const entry of topLevel(trimmed)) {
    if (entry === '') throw new Error(`empty entry in ${JSON.stringify(text)}`);
    hosts.push(...expandEntry(entry, text));
    if (hosts.length > MAX_HOSTS) throw new Error(`${JSON.stringify(text)} names more than ${MAX_HOSTS} hosts`);
  }
  if (hosts.some((h) => h === '' || /\s/.test(h))) throw new Error(`${JSON.stringify(text)} holds an empty host name or one with spaces`);
  return hosts;
}

/** `2(x2),1` → [2, 2, 1]: tasks on each node of the step, by node id. */
export function expandTasksPerNode(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part.trim());
    if (m === null) throw new Error(`${JSON.stringify(part)} in ${JSON.stringify(text)} is not N or N(xK)`);
    const repeat = Number(m[2] ?? '1');
    if (out.length + repeat > MAX_HOSTS) throw new Error(`${JSON.stringify(text)} covers more than ${MAX_HOSTS} nodes`);
    for (let k = 0; k < repeat; k++) out.push(Number(m[1]));
  }
  return out;
}
