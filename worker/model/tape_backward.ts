/**
 * Backward by walking tfjs's tape ourselves: the same backprop as tf.variableGrads — the same
 * gradient functions over the same tape nodes, in the same order, so the same bits — with two
 * differences:
 *   - memory: each node's saved tensors (the activations its gradient reads) and the gradients
 *     of its outputs are freed as soon as the walk has passed it, and a parameter's gradient once
 *     it has been handed out, so the backend's high-water mark is the forward's activations plus
 *     the gradients in flight; tf.variableGrads keeps all of them until backprop ends (at
 *     `--vocab-size 256 --n-layers 4 --seq-len 128`: a wasm heap of 120 MiB instead of 298).
 *     This makes it the normal backward (GPT.trainStep, `backwardSync`);
 *   - overlap (PyTorch DDP's gradient buckets; GPT.trainStepOverlapped, `backward`): it hands
 *     each parameter's gradient out as soon as it is final and yields to the event loop between
 *     tape nodes, so that the ring (comm/) can move the buckets already handed out while the rest
 *     of backward runs. On the wasm backend kernels are synchronous: without those yields an
 *     all-reduce started mid-backward would not move until backward ended.
 *
 * How: tfjs's engine records a tape during a forward run inside its gradient scope (engine.ts
 * startTape/endTape, private in its types but plain methods at run time; checked below). We run
 * the forward that way, keep the tape, and walk it backward ourselves (tfjs's tape.ts
 * backpropagateGradients, restated node by node). A parameter's gradient is final once the walk
 * has passed the first tape node that reads it (its last use in backward): the LM head's after
 * the head, a block's after that block, the token embedding (read by the first node) last.
 *
 * Not re-entrant, and no other gradient computation may start while a walk is between yields
 * (one trainStep at a time).
 */
import { RosedistError } from '../../shared/errors.js';
import { tf } from '../tf.js';

/** A tape node as tfjs's engine records it (tfjs-core tape.ts TapeNode). */
interface TapeNode {
  readonly id: number;
  readonly kernelName: string;
  readonly inputs: Readonly<Record<string, tf.Tensor>>;
  readonly outputs: readonly tf.Tensor[];
  readonly gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
  readonly saved?: readonly tf.Tensor[];
}

/** The parts of tfjs's Engine this file uses. */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
}

function engineInternals(): EngineInternals {
  const engine = tf.engine() as unknown as Partial<EngineInternals>;
  if (
    typeof engine.startTape !== 'function' ||
    typeof engine.endTape !== 'function' ||
    engine.state === undefined ||
    typeof engine.state.gradientDepth !== 'number'
  ) {
    throw new RosedistError(
      "this @tensorflow/tfjs-core has no startTape/endTape/activeTape on its engine: overlapped backward cannot record the forward's tape",
      'pass --no-overlap, or install the tfjs version in package-lock.json',
    );
  }
  return engine as EngineInternals;
}

/**
 * Receives the indices into xs whose gradients just became final and those gradients (null:
 * xs[i] does not reach y), in the order they become final; the tensors are valid only during
 * the call (the walk frees them after it).
 */
export type OnFinal = (indices: number[], grads: (tf.Tensor | null)[]) => void;

/** A forward run with its tape, ready for `backward` or `backwardSync` (once). */
export interface TapedForward {
  /** The scalar the gradients are of. */
  readonly y: tf.Scalar;
  /** Release everything the forward kept (called by backward; call it yourself to abandon the tape). */
  dispose(): void;
  /**
   * Backprop from y to `xs`, gradients to `onFinal` as they become final. Between tape nodes the
   * walk yields to the event loop once `sliceMs` passed since the last yield, and after every onFinal.
   */
  backward(xs: readonly tf.Variable[], onFinal: OnFinal, sliceMs: number): Promise<void>;
  /** `backward` in one go, without yielding. */
  backwardSync(xs: readonly tf.Variable[], onFinal: OnFinal): void;
}

/** Run `f` (tensors it creates are disposed, except y and what the tape saves) recording the tape. */
export function recordForward(f: () => tf.Scalar): TapedForward {
  const engine = engineInternals();
  if (engine.state.gradientDepth !== 0) throw new RosedistError('recordForward: another gradient computation is running (not re-entrant)');
  engine.startTape();
  let y: tf.Scalar;
  let tape: TapeNode[];
  try {
    y = tf.tidy(f);
  } finally {
    tape = engine.state.activeTape ?? [];
    engine.endTape();
  }
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    for (const node of tape) for (const t of node.saved ?? []) t.dispose();
    if (engine.state.activeTape === tape) engine.state.activeTape = null;
    y.dispose();
  };
  return {
    y,
    dispose,
    backward: async (xs, onFinal, sliceMs) => {
      const nodes = walk(tape, y, xs, onFinal);
      try {
        let lastYield = performance.now();
        for (let r = nodes.next(); r.done !== true; r = nodes.next()) {
          if (r.value || performance.now() - lastYield >= sliceMs) {
            await yieldToLoop();
            lastYield = performance.now();
          }
        }
      } finally {
        nodes.return();
        dispose();
      }
    },
    backwardSync: (xs, onFinal) => {
      const nodes = walk(tape, y, xs, onFinal);
      try {
        while (nodes.next().done !== true);
      } finally {
        nodes.return();
        dispose();
      }
    },
  };
}

/**
 * The tape nodes on a path from some x to y, in tape order, each with its inputs pruned to those
 * that depend on an x (as tfjs-core's getFilteredNodesXToY).
 */
function pathNodes(tape: readonly TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodeFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodeFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set<number>([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i] as TapeNode;
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodeToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  return tape
    .filter((n) => nodeFromX.has(n.id) && nodeToY.has(n.id))
    .map((n) => ({ ...n, inputs: Object.fromEntries(Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id))) }));
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The walk, one tape node per `next()`: yields after every node but the last, `true` when
 * onFinal was called for it (the async driver then yields to the event loop at once).
 */
function* walk(tape: readonly TapeNode[], y: tf.Scalar, xs: readonly tf.Variable[], onFinal: OnFinal): Generator<boolean, void, undefined> {
  const nodes = pathNodes(tape, xs, y);
  // What no path node will read (the saved tensors of nodes off every x-to-y path) goes now.
  const onPath = new Set(nodes.map((n) => n.id));
  for (const node of tape) if (!onPath.has(node.id)) for (const t of node.saved ?? []) t.dispose();
  // xs index → position of the first node reading it (its gradient is final once that node is done).
  const byPosition = new Map<number, number[]>();
  const unused: number[] = [];
  const xIndex = new Map<number, number>(xs.map((x, i) => [x.id, i]));
  const firstUse = new Map<number, number>();
  nodes.forEach((node, pos) => {
    for (const t of Object.values(node.inputs)) {
      const i = xIndex.get(t.id);
      if (i !== undefined && !firstUse.has(i)) firstUse.set(i, pos);
    }
  });
  xs.forEach((_, i) => {
    const pos = firstUse.get(i);
    if (pos === undefined) unused.push(i);
    else byPosition.set(pos, [...(byPosition.get(pos) ?? []), i]);
  });
  // tensor id → its accumulated gradient (tfjs's accumulatedGradientMap), for the tensors whose
  // gradient is still to be read: the inputs of nodes passed whose own node is still ahead.
  const grads = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]]);
  /** Forget tensor `id`'s gradient and free it, unless another entry holds the same tensor. */
  const release = (id: number): void => {
    const g = grads.get(id);
    if (g === undefined) return;
    grads.delete(id);
    for (const other of grads.values()) if (other === g) return;
    g.dispose();
  };
  try {
    if (unused.length > 0)
      onFinal(
        unused,
        unused.map(() => null),
      );
    for (let pos = nodes.length - 1; pos >= 0; pos--) {
      const node = nodes[pos] as TapeNode;
      step(node, grads);
      // Read by this node's gradient only: its saved tensors (its own clones) and its dys.
      for (const t of node.saved ?? []) t.dispose();
      for (const o of node.outputs) release(o.id);
      const final = byPosition.get(pos);
      if (final !== undefined) {
        const ids = final.map((i) => (xs[i] as tf.Variable).id);
        onFinal(
          final,
          ids.map((id) => grads.get(id) ?? null),
        );
        for (const id of ids) release(id);
      }
      if (pos > 0) yield final !== undefined;
    }
  } finally {
    for (const g of new Set(grads.values())) g.dispose();
  }
}

/** Backprop dy through one node, accumulating into `grads` (tfjs-core backpropagateGradients' loop body). */
function step(node: TapeNode, grads: Map<number, tf.Tensor>): void {
  if (node.gradient === undefined) throw new RosedistError(`cannot compute gradient: no gradient function for ${node.kernelName}`);
  const gradient = node.gradient;
  // One tidy per node: what the gradient function makes besides the new gradients is freed now.
  tf.tidy(() => {
    const dys = node.outputs.map((o) => grads.get(o.id) ?? null);
    const inputGrads = gradient(dys);
    for (const [name, x] of Object.entries(node.inputs)) {
      const fn = inputGrads[name];
      if (fn === undefined) throw new RosedistError(`cannot backprop through input ${name} of ${node.kernelName}`);
      const dx = tf.tidy(fn);
      if (dx.dtype !== 'float32' || dx.shape.length !== x.shape.length || dx.shape.some((d, k) => d !== x.shape[k])) {
        throw new RosedistError(
          `gradient of ${node.kernelName}'s input ${name}: ${dx.dtype} [${dx.shape.join(', ')}], expected float32 [${x.shape.join(', ')}]`,
        );
      }
      const before = grads.get(x.id);
      if (before === undefined) {
        grads.set(x.id, dx);
      } else {
        grads.set(x.id, tf.add(before, dx));
        before.dispose();
      }
    }
    // Kept: the gradients this node left in the map.
    return Object.values(node.inputs).map((x) => grads.get(x.id) as tf.Tensor);
  });
}
