/**
 * The pass/fail bookkeeping of the namespace-cluster checks (scripts/cluster_check.ts,
 * scripts/elastic_cluster_check.ts): each check is timed and run, a thrown error is its failure
 * (never the end of the run, so the later checks still run), one PASS/FAIL line is printed as it
 * ends, and the run ends with a Markdown table of them all.
 *
 * One module so that both scripts time, catch and print a check the same way. Each keeps what it
 * printed before: how many lines of a failed check's error its detail keeps, the seconds column's
 * heading and the table's word for a pass are options.
 */

export interface Result {
  readonly check: string;
  readonly ok: boolean;
  readonly seconds: number;
  readonly detail: string;
}

export interface CheckResultsOptions {
  /** Lines of a failed check's error message kept in its detail (joined by ' | '). */
  readonly errorLines: number;
  /** The heading of the table's seconds column. */
  readonly secondsHeading: string;
  /** The table's result word for a passed check (a failed one is FAIL). */
  readonly passWord: string;
}

export class CheckResults {
  readonly results: Result[] = [];

  constructor(private readonly options: CheckResultsOptions) {}

  /** Run one check: `body` returns the detail of a pass; what it throws is the detail of a failure. */
  async check(name: string, body: () => Promise<string>): Promise<void> {
    const t0 = Date.now();
    let ok = true;
    let detail: string;
    try {
      detail = await body();
    } catch (e) {
      ok = false;
      detail = (e as Error).message.split('\n').slice(0, this.options.errorLines).join(' | ');
    }
    const r: Result = { check: name, ok, seconds: (Date.now() - t0) / 1000, detail };
    this.results.push(r);
    console.log(`${r.ok ? 'PASS' : 'FAIL'} ${r.check} (${r.seconds.toFixed(1)} s): ${r.detail}`);
  }

  /** How many checks failed so far. */
  failed(): number {
    return this.results.filter((r) => !r.ok).length;
  }

  /** The table of every check so far, after a blank line ('|' in a detail becomes '/'). */
  printTable(): void {
    const { secondsHeading, passWord } = this.options;
    console.log(`\n| check | result | ${secondsHeading} | detail |\n|---|---|---|---|`);
    for (const r of this.results) console.log(`| ${r.check} | ${r.ok ? passWord : 'FAIL'} | ${r.seconds.toFixed(1)} | ${r.detail.replaceAll('|', '/')} |`);
  }
}
