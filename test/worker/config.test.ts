import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../shared/errors.js';
import { allReduceTopologyOf, gptConfigOf, parseTrainConfig, trainUsage, wantsHelp } from '../../worker/config.js';

/** The ConfigError message and hint for `argv`, asserting that it throws one. */
function rejects(argv: string[], program: 'train_minimal' | 'train_ddp' = 'train_minimal'): string {
  try {
    parseTrainConfig(argv, program);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    return `${e.message} | ${e.hint ?? ''}`;
  }
  assert.fail(`${argv.join(' ')} was accepted`);
}

describe('parseTrainConfig', () => {
  it("has the original's defaults and ours", () => {
    const c = parseTrainConfig([], 'train_minimal');
    assert.deepEqual(gptConfigOf(c), {
      vocabSize: 10000,
      maxPositionEmbeddings: 128,
      nLayers: 2,
      nHeads: 4,
      dModel: 128,
      dFf: 512,
      dropout: 0.1,
    });
    assert.equal(c.batchSize, 8);
    assert.equal(c.seqLen, 32);
    assert.equal(c.numSteps, 50);
    assert.equal(c.lr, 3e-4);
    assert.equal(c.amp, true);
    assert.equal(c.resume, false);
    assert.equal(c.seed, 0);
    assert.equal(c.evalInterval, 10);
    assert.equal(c.checkpointInterval, 20);
    assert.equal(c.weightDecay, 0.01);
    assert.equal(c.backend, 'auto');
    assert.equal(c.dataset, 'toy');
    assert.equal(c.tokenizer, 'byte');
    assert.equal(c.dataDir, 'data/cache');
    assert.equal(c.gradAccumSteps, 1);
    assert.equal(c.dropLast, false);
    assert.equal(c.collectiveTimeoutS, 300);
    assert.equal(c.logFormat, 'text');
    assert.equal(c.profile, null);
    assert.equal(c.checkpointPath, 'checkpoints/minigpt_single.safetensors');
    assert.equal(c.logFile, 'logs/train_minimal.log');
    assert.equal(c.metricsFile, 'logs/train_minimal.metrics.jsonl');
    assert.equal(c.program, 'train_minimal');
    assert.ok(Object.isFrozen(c));
  });

  it('uses per-program defaults for train_ddp', () => {
    const c = parseTrainConfig([], 'train_ddp');
    assert.equal(c.checkpointPath, 'checkpoints/minigpt_ddp.safetensors');
    assert.equal(c.logFile, 'logs/train_ddp.log');
    assert.equal(c.metricsFile, 'logs/train_ddp.metrics.jsonl');
  });

  it('parses every kind of flag', () => {
    const c = parseTrainConfig(
      [
        '--vocab-size',
        '64',
        '--d-model=16',
        '--n-heads',
        '2',
        '--n-layers',
        '1',
        '--seq-len',
        '8',
        '--dropout',
        '0',
        '--lr',
        '1e-3',
        '--no-amp',
        '--resume',
        '--drop-last',
        '--backend',
        'cpu',
        '--log-file',
        '/tmp/x/run.log',
        '--dataset',
        'text:/a b.txt',
        '--grad-accum-steps',
        '3',
        '--collective-timeout',
        '2.5',
        '--log-format',
        'json',
        '--seed',
        '7',
        '--profile',
        'logs/trace.json',
      ],
      'train_ddp',
    );
    assert.equal(c.vocabSize, 64);
    assert.equal(c.dModel, 16);
    assert.equal(c.nHeads, 2);
    assert.equal(c.dropout, 0);
    assert.equal(c.lr, 1e-3);
    assert.equal(c.amp, false);
    assert.equal(c.resume, true);
    assert.equal(c.dropLast, true);
    assert.equal(c.backend, 'cpu');
    assert.equal(c.metricsFile, '/tmp/x/run.metrics.jsonl');
    assert.equal(c.dataset, 'text:/a b.txt');
    assert.equal(c.gradAccumSteps, 3);
    assert.equal(c.collectiveTimeoutS, 2.5);
    assert.equal(c.logFormat, 'json');
    assert.equal(c.seed, 7);
    assert.equal(c.profile, 'logs/trace.json');
  });

  it('the last of a repeated flag wins', () => {
    assert.equal(parseTrainConfig(['--lr', '1', '--lr', '2'], 'train_minimal').lr, 2);
    // As torch.optim.AdamW: lr 0 is a frozen run.
    assert.equal(parseTrainConfig(['--lr', '0'], 'train_minimal').lr, 0);
  });

  it('rejects each bad flag with a message naming it and a hint', () => {
    const cases: [string[], RegExp][] = [
      [['--vocab-sise', '5'], /unknown option --vocab-sise.*--help/],
      [['stray'], /stray/],
      [['--batch-size', 'abc'], /--batch-size "abc" is not a number/],
      [['--batch-size'], /--batch-size needs a value/],
      [['--batch-size', '0'], /--batch-size 0 must be at least 1/],
      [['--n-layers', '-2'], /--n-layers -2 must be at least 1/],
      [['--seq-len', '2.5'], /--seq-len 2.5 is not an integer/],
      [['--d-model', '130'], /--d-model 130 is not divisible by --n-heads 4.*--d-model 132/],
      [['--seq-len', '200'], /--seq-len 200 is longer than --max-position-embeddings 128/],
      [['--dropout', '1'], /--dropout 1 is outside \[0, 1\)/],
      [['--dropout', '-0.1'], /--dropout -0.1 is outside/],
      [['--lr', '-1'], /--lr -1 must be 0 or more/],
      // yargs splits "-1e-3" into short flags: the value must still reach its range check.
      [['--lr', '-1e-3'], /--lr -0.001 must be 0 or more/],
      [['--weight-decay', '-2E-1'], /--weight-decay -0.2/],
      [['--lr', 'nan'], /--lr "nan" is not a number/],
      [['--lr', 'inf'], /--lr "inf" is not a number/],
      [['--weight-decay', '-1'], /--weight-decay -1/],
      [['--backend', 'gpu'], /--backend gpu is not one of auto, tensorflow, wasm, cpu/],
      [['--log-format', 'xml'], /--log-format xml/],
      [['--dataset', 'imagenet'], /--dataset imagenet is not a dataset/],
      [['--collective-timeout', '-1'], /--collective-timeout "-1" is not a number of seconds.*--collective-timeout inf for no timeout/],
      [['--collective-timeout', 'soon'], /--collective-timeout "soon" is not a number of seconds/],
      [['--seed', '-1'], /--seed -1 must be at least 0/],
      [['--seed', '4294967296'], /--seed 4294967296 is more than 4294967295/],
      // Issue 13, #5: every size has an upper bound, and a vocabulary needs two tokens.
      [['--batch-size', '4294967295'], /--batch-size 4294967295 is more than 1048576 \| pass --batch-size 1048576 or less/],
      [['--d-model', '100000'], /--d-model 100000 is more than 65536/],
      [['--vocab-size', '1'], /--vocab-size 1 must be at least 2/],
      [['--vocab-size', '2000000'], /--vocab-size 2000000 is more than 1048576/],
      [['--n-layers', '5000'], /--n-layers 5000 is more than 1024/],
      [['--max-position-embeddings', '100000'], /is more than 65536/],
      [['--grad-accum-steps', '100000'], /is more than 65536/],
      // Issue 13, #14: options that would be ignored or misread.
      [['--tokenizer', 'gpt2'], /--tokenizer gpt2 does nothing with --dataset toy \(random token ids, no text\) \| pass --dataset brown or text:<path>/],
      [['--tokenizer', 'byte', '--dataset', 'toy:100'], /--tokenizer byte does nothing with --dataset toy:100/],
      [['--tokenizer', 'bpe', '--dataset', 'brown'], /--tokenizer bpe is not one of byte, gpt2/],
      [['--drop-last=maybe'], /--drop-last=maybe is not true or false \| write --drop-last or --no-drop-last/],
      [['--no-drop-last=yes'], /--no-drop-last=yes is not true or false/],
      [['--resume=1'], /--resume=1 is not true or false/],
      [['--seq-len', '1'], /--seq-len 1 predicts nothing/],
      [['--profile'], /--profile needs a value/],
      [['--profile', '--lr', '1'], /--profile needs a value/],
    ];
    for (const [argv, pattern] of cases) assert.match(rejects(argv), pattern, argv.join(' '));
  });

  it('--allreduce-topology: auto by default, flat under --zero 1 and tensor parallelism; hierarchical refused where it cannot apply', () => {
    const of = (argv: string[]) => allReduceTopologyOf(parseTrainConfig(argv, 'train_ddp'));
    assert.deepEqual(of([]), { choice: 'auto' });
    assert.deepEqual(of(['--allreduce-topology', 'hierarchical']), { choice: 'hierarchical' });
    assert.deepEqual(of(['--allreduce-topology', 'flat']), { choice: 'flat' });
    assert.deepEqual(of(['--zero', '1']), { choice: 'flat', why: 'auto; --zero 1 runs on the flat ring' });
    assert.equal(of(['--tensor-parallel-size', '2']).choice, 'flat');
    const ddp = (argv: string[]) => rejects(argv, 'train_ddp');
    assert.match(ddp(['--allreduce-topology', 'tree']), /^--allreduce-topology tree is not one of auto, flat, hierarchical \| pass --allreduce-topology auto$/);
    assert.match(
      ddp(['--allreduce-topology', 'hierarchical', '--zero', '1']),
      /not combined with --zero 1.*\| pass --allreduce-topology auto or flat with --zero 1/,
    );
    assert.match(ddp(['--allreduce-topology', 'hierarchical', '--tensor-parallel-size', '2']), /not combined with tensor parallelism/);
    assert.match(rejects(['--allreduce-topology', 'hierarchical']), /does nothing in train_minimal/);
    assert.match(ddp(['--allreduce-topology', 'hierarchical', '--overlap']), /not combined with --overlap/);
    assert.deepEqual(of(['--overlap']), { choice: 'flat', why: "auto; --overlap's buckets run on the flat ring" });
  });

  it('accepts the ways of writing a boolean, the tokenizer of a text dataset, and a collective timeout of "never"', () => {
    assert.equal(parseTrainConfig(['--drop-last=true'], 'train_minimal').dropLast, true);
    assert.equal(parseTrainConfig(['--drop-last=false'], 'train_minimal').dropLast, false);
    assert.equal(parseTrainConfig(['--drop-last'], 'train_minimal').dropLast, true);
    assert.equal(parseTrainConfig(['--no-drop-last'], 'train_minimal').dropLast, false);
    assert.equal(parseTrainConfig(['--tokenizer', 'gpt2', '--dataset', 'brown'], 'train_minimal').tokenizer, 'gpt2');
    // Issue 13, #4: 0, inf, infinity and never all mean no timeout, stored as 0; huge values stay as given.
    for (const v of ['0', 'inf', 'Infinity', 'never']) assert.equal(parseTrainConfig(['--collective-timeout', v], 'train_ddp').collectiveTimeoutS, 0, v);
    assert.equal(parseTrainConfig(['--collective-timeout', '10000000'], 'train_ddp').collectiveTimeoutS, 10_000_000);
    assert.equal(parseTrainConfig(['--vocab-size', '2'], 'train_ddp').vocabSize, 2);
  });

  it('--overlap: off by default, on when given, --no-overlap or --overlap false keep it off, refused with --zero 1 or tensor parallelism', () => {
    const c = parseTrainConfig([], 'train_ddp');
    assert.equal(c.overlap, false);
    assert.equal(c.bucketMb, 1);
    assert.equal(parseTrainConfig(['--overlap'], 'train_ddp').overlap, true);
    assert.equal(parseTrainConfig(['--overlap', 'true'], 'train_ddp').overlap, true);
    assert.equal(parseTrainConfig(['--no-overlap'], 'train_ddp').overlap, false);
    assert.equal(parseTrainConfig(['--overlap', 'false'], 'train_ddp').overlap, false);
    assert.equal(parseTrainConfig(['--overlap=false'], 'train_ddp').overlap, false);
    assert.equal(parseTrainConfig(['--bucket-mb', '0.25'], 'train_ddp').bucketMb, 0.25);
    assert.equal(parseTrainConfig(['--zero', '1'], 'train_ddp').overlap, false);
    assert.equal(parseTrainConfig(['--tensor-parallel-size', '2'], 'train_ddp').overlap, false);
    assert.equal(parseTrainConfig(['--use-tensor-parallel'], 'train_ddp').overlap, false);
    assert.equal(parseTrainConfig(['--zero', '1', '--no-overlap'], 'train_ddp').overlap, false);
    assert.match(
      rejects(['--zero', '1', '--overlap'], 'train_ddp'),
      /^--overlap is not combined with --zero 1 yet.* \| leave out --overlap, or drop --zero 1$/,
    );
    assert.match(rejects(['--overlap', 'true', '--tensor-parallel-size', '2'], 'train_ddp'), /--overlap is not combined with tensor parallelism yet/);
    for (const v of ['0', '-1', '2000', 'nan', 'abc']) assert.match(rejects(['--bucket-mb', v], 'train_ddp'), /--bucket-mb/, v);
    assert.match(rejects(['--bucket-mb', '0']), /--bucket-mb 0 is outside \(0, 1024\] \| pass a size in MiB such as --bucket-mb 1/);
  });

  it('has help', () => {
    assert.ok(wantsHelp(['--lr', '1', '--help']));
    assert.ok(!wantsHelp(['--lr', '1']));
    const usage = trainUsage('train_ddp');
    assert.match(usage, /--vocab-size\s+vocabulary size V \(default: 10000\)/);
    assert.match(usage, /--no-amp/);
    assert.match(usage, /minigpt_ddp\.safetensors/);
    assert.match(usage, /--profile\s+write a Chrome trace .* \(default: off\)/);
  });
});
