/**
 * The step buffer: what one rank contributes to one optimizer step, in ONE flat float32 array so
 * that one collective carries all of it (no per-tensor calls):
 *
 *   flat = [ grads (numParams, GPT.params order) | loss (1) ]
 *
 * Per optimizer step: each micro-batch's backward writes its gradients into `microGrads()`,
 * `accumulate` folds them (and the micro-batch's mean loss) in, `average` divides by the number
 * of micro-batches; then ddp.ts averages the whole array over ranks (`averageGradients`) or, with
 * ZeRO, reduce-scatters the gradients (`averageGradientShards`), and numerics.ts tells a gradient
 * from the loss by index (`isLoss`).
 */
export class GradBuffer {
  /** [grads | loss], numParams + 1 floats. */
  readonly flat: Float32Array;
  /** View of flat[0, numParams). */
  readonly grads: Float32Array;
  readonly numParams: number;
  /** Where a micro-batch's backward writes: `grads` itself when there is one micro-batch. */
  private readonly micro: Float32Array;
  private lossSum = 0;
  private micros = 0;
  /** Micro-batches of the step being folded (lastMicroLoss). */
  private folding = 1;

  /**
   * A new zeroed buffer of `numParams` gradients (`accumSteps` micro-batches per step: a separate
   * array for the micro-batch's gradients when more than one), or one over an existing
   * [grads | loss] array, without a copy (one micro-batch per step).
   */
  constructor(numParamsOrFlat: number | Float32Array, accumSteps = 1) {
    this.flat = typeof numParamsOrFlat === 'number' ? new Float32Array(numParamsOrFlat + 1) : numParamsOrFlat;
    this.numParams = this.flat.length - 1;
    this.grads = this.flat.subarray(0, this.numParams);
    this.micro = accumSteps > 1 ? new Float32Array(this.numParams) : this.grads;
  }

  /** Index of the loss in `flat`. */
  get lossIndex(): number {
    return this.numParams;
  }

  /** This rank's loss; after averageGradients, the mean over ranks. */
  get loss(): number {
    return this.flat[this.numParams] as number;
  }

  set loss(value: number) {
    this.flat[this.numParams] = value;
  }

  /** Whether flat[i] is the loss (else a gradient). */
  isLoss(i: number): boolean {
    return i === this.numParams;
  }

  /** Where the next micro-batch's backward writes its flat gradients [numParams]. */
  microGrads(): Float32Array {
    return this.micro;
  }

  /** Fold the micro-batch just written into microGrads(), with its mean loss, into the sums. */
  accumulate(loss: number): void {
    const { grads, micro } = this;
    if (micro !== grads) {
      if (this.micros === 0) grads.set(micro);
      else for (let i = 0; i < grads.length; i++) grads[i] += micro[i] as number;
    } else if (this.micros > 0) {
      throw new Error('GradBuffer: more than one micro-batch per step needs new GradBuffer(n, accumSteps > 1)');
    }
    this.lossSum += loss;
    this.micros += 1;
  }

  /**
   * Overlap (ddp_overlap.ts): the step's last micro-batch, its loss now (the mean loss is set, the
   * next step starts afresh), its gradients in microGrads() range by range as backward finishes
   * them, each folded in by `foldRange`: what accumulate + average leave, bit for bit.
   */
  lastMicroLoss(loss: number): void {
    if (this.micro === this.grads && this.micros > 0) {
      throw new Error('GradBuffer: more than one micro-batch per step needs new GradBuffer(n, accumSteps > 1)');
    }
    this.lossSum += loss;
    this.micros += 1;
    this.folding = this.micros;
    this.loss = this.lossSum / this.micros;
    this.lossSum = 0;
    this.micros = 0;
  }

  /** grads[lo, hi) after lastMicroLoss: the micro-batch's gradients folded in and averaged. */
  foldRange(lo: number, hi: number): void {
    const { grads, micro, folding: k } = this;
    if (micro === grads) return;
    if (k === 1) {
      grads.set(micro.subarray(lo, hi), lo);
      return;
    }
    // Two float32 roundings, as accumulate then average.
    for (let i = lo; i < hi; i++) grads[i] += micro[i] as number;
    for (let i = lo; i < hi; i++) grads[i] /= k;
  }

  /** Gradients and loss averaged over the micro-batches accumulated; the next step starts afresh. */
  average(): void {
    const k = this.micros;
    if (k > 1) for (let i = 0; i < this.grads.length; i++) this.grads[i] /= k;
    this.loss = k === 0 ? Number.NaN : this.lossSum / k;
    this.lossSum = 0;
    this.micros = 0;
  }
}
