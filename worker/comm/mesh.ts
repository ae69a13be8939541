/**
 * The 2-D device mesh of tensor parallelism with data parallelism: world = dp × tp.
 *
 *   TP groups: consecutive ranks, [0..tp), [tp..2tp), ... — torchrun numbers ranks node by node,
 *              so when tp divides --nproc-per-node a TP group (the chatty one: two all-reduces
 *              per block, forward and backward) stays on one host, over ipc://.
 *   DP groups: the ranks with the same TP rank, {j, j+tp, j+2tp, ...} (one gradient all-reduce
 *              per step).
 * Rank r has tpRank = r mod tp and dpRank = floor(r / tp). tp 1 is plain data parallelism (the
 * DP group is the world itself, no new sockets); tp = world size has a DP group of one.
 * Creating the mesh is a collective of the world: every rank creates every group, in the same
 * order (torch's new_group rule).
 */
import { ConfigError } from '../../shared/errors.js';
import { SingleProcessGroup, type ProcessGroup } from './process_group.js';

export interface MeshLayout {
  readonly tpSize: number;
  readonly dpSize: number;
  /** TP group k: ranks k*tp .. k*tp+tp-1. */
  readonly tpGroups: readonly (readonly number[])[];
  /** DP group j: ranks j, j+tp, ... */
  readonly dpGroups: readonly (readonly number[])[];
}

export interface Mesh extends MeshLayout {
  readonly world: ProcessGroup;
  readonly tp: ProcessGroup;
  readonly dp: ProcessGroup;
  readonly tpRank: number;
  readonly dpRank: number;
}

/** The groups of a world of `worldSize` with tensor-parallel size `tp`; ConfigError if tp does not divide it. */
export function meshLayout(worldSize: number, tp: number): MeshLayout {
  if (!Number.isInteger(tp) || tp < 1 || worldSize % tp !== 0) {
    throw new ConfigError(
      `--tensor-parallel-size ${tp} does not divide the world size ${worldSize}`,
      `pass a divisor of ${worldSize}, or start a multiple of ${tp} workers`,
    );
  }
  const dpSize = worldSize / tp;
  const tpGroups = Array.from({ length: dpSize }, (_, k) => Array.from({ length: tp }, (_, i) => k * tp + i));
  const dpGroups = Array.from({ length: tp }, (_, j) => Array.from({ length: dpSize }, (_, i) => i * tp + j));
  return { tpSize: tp, dpSize, tpGroups, dpGroups };
}

/** One line for the log header: "mesh: dp 2 × tp 2; TP groups [0,1] [2,3]; DP groups [0,2] [1,3]". */
export function describeMesh(m: MeshLayout): string {
  const list = (gs: readonly (readonly number[])[]) => gs.map((g) => `[${g.join(',')}]`).join(' ');
  return `mesh: dp ${m.dpSize} × tp ${m.tpSize}; TP groups ${list(m.tpGroups)}; DP groups ${list(m.dpGroups)}`;
}

/** Create this rank's TP and DP groups (a collective of `world`). */
export async function createMesh(world: ProcessGroup, tp: number): Promise<Mesh> {
  const layout = meshLayout(world.worldSize, tp);
  const tpRank = world.rank % tp;
  const dpRank = Math.floor(world.rank / tp);
  if (tp === 1) return { ...layout, world, tp: new SingleProcessGroup(), dp: world, tpRank, dpRank };
  if (tp === world.worldSize) return { ...layout, world, tp: world, dp: new SingleProcessGroup(), tpRank, dpRank };
  if (world.newGroup === undefined) throw new ConfigError('this process group cannot make subgroups', 'run under the launcher (ZeroMQ group)');
  let tpGroup: ProcessGroup | undefined;
  let dpGroup: ProcessGroup | undefined;
  for (const ranks of layout.tpGroups) tpGroup = (await world.newGroup(ranks)) ?? tpGroup;
  for (const ranks of layout.dpGroups) dpGroup = (await world.newGroup(ranks)) ?? dpGroup;
  return { ...layout, world, tp: tpGroup!, dp: dpGroup!, tpRank, dpRank };
}
