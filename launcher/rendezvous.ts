/**
 * Multi-node runs: the launchers agree on the run before any worker starts, then fail together.
 *
 * Node 0's launcher listens on master-addr : master-port + 1 (the control port; master-port
 * itself stays free for the rank-0 worker) and hosts the run's Coordinator. Every other launcher
 * connects (retrying until --join-timeout) and shakes hands; lines of JSON over TCP:
 *   0 → k  {"type":"challenge","version":1,"nonce":N0}                                 plain
 *   k → 0  <mac> {"type":"hello","version":1,"serverNonce":N0,"nonce":Nk,"nodeRank":k,
 *                 "nnodes":..,"localWorldSize":..,"maxRestarts":..,"runId":..|null}
 *   0 → k  <mac> {"type":"welcome"|"reject","nonce":Nk,"reason"?:..}
 *          or, when the hello's mac is wrong, plain {"type":"denied","reason":..} and a close
 * mac = HMAC-SHA256(secret, json), so each side proves it knows the secret, and the nonces make a
 * recorded handshake useless. Afterwards both sides talk through a SignedChannel
 * (control_channel.ts) carrying launcher/protocol.ts messages, with heartbeats (a node silent
 * for HEARTBEAT_TIMEOUT_MS is lost, as one whose connection closed). Once nnodes - 1 nodes are welcome,
 * the Coordinator starts attempt 0 everywhere. Strangers and latecomers are refused and logged.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { CommError, ConfigError } from '../shared/errors.js';
import { sleep } from '../shared/timers.js';
import type { LaunchConfig } from './config.js';
import { channelKeys, HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS, hmac, LineReader, sameMac, SignedChannel } from './control_channel.js';
import { Coordinator } from './coordinator.js';
import type { EventSink } from './events.js';
import { asToCoordinator, asToNode } from './protocol.js';
import { NodeClient, type Rendezvous } from './coordinator_client.js';

export const VERSION = 1;
/** How long a connection may take to say hello (or answer it), ms. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const RETRY_MS = 500;
/** How long a refused connection may take to read its refusal, ms. */
const REFUSE_LINGER_MS = 1000;
/** A hello is small; a longer first line is not one. */
const MAX_HELLO = 4096;

export function controlPort(masterPort: number): number {
  return masterPort + 1;
}

interface Hello {
  readonly nonce: string;
  readonly nodeRank: number;
  readonly nnodes: number;
  readonly localWorldSize: number;
  readonly maxRestarts: number;
  readonly runId: string | null;
}

export function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `<mac> <json>` checked against the secret; the parsed object, or why not. */
export function openSigned(line: string, secret: string): Record<string, unknown> | string {
  const space = line.indexOf(' ');
  if (space <= 0) return 'not a signed line';
  const json = line.slice(space + 1);
  if (!sameMac(line.slice(0, space), hmac(secret, json))) return 'authentication failed (a different secret?)';
  return parseObject(json) ?? 'not a JSON object';
}

export function signedLine(secret: string, value: unknown): string {
  const json = JSON.stringify(value);
  return `${hmac(secret, json)} ${json}\n`;
}

function readHello(line: string, secret: string, serverNonce: string): Hello | string {
  const v = openSigned(line, secret);
  if (typeof v === 'string') return v;
  const ints = ['nodeRank', 'nnodes', 'localWorldSize', 'maxRestarts'].every((k) => Number.isSafeInteger(v[k]));
  if (v.type !== 'hello' || v.version !== VERSION || typeof v.nonce !== 'string' || !ints) return 'malformed hello';
  if (v.serverNonce !== serverNonce) return 'stale hello (replayed?)';
  return { ...(v as unknown as Hello), runId: typeof v.runId === 'string' ? v.runId : null };
}

/** What node 0 holds against a hello from an authenticated launcher; undefined: nothing. */
function mismatch(h: Hello, config: LaunchConfig, joined: ReadonlySet<number>): string | undefined {
  if (h.nnodes !== config.nnodes) return `--nnodes ${h.nnodes} differs from node 0's ${config.nnodes}`;
  if (h.nodeRank < 1 || h.nodeRank >= config.nnodes) return `--node-rank ${h.nodeRank} is not in 1..${config.nnodes - 1}`;
  if (joined.has(h.nodeRank)) return `node rank ${h.nodeRank} has already joined (two launchers with --node-rank ${h.nodeRank}?)`;
  return termsMismatch(h, config);
}

/**
 * What node 0 holds against the terms every hello carries, fixed or elastic (restarts, workers,
 * run id); undefined: nothing.
 */
export function termsMismatch(h: Pick<Hello, 'maxRestarts' | 'localWorldSize' | 'runId'>, config: LaunchConfig): string | undefined {
  if (h.maxRestarts !== config.maxRestarts) return `--max-restarts ${h.maxRestarts} differs from node 0's ${config.maxRestarts}`;
  if (h.localWorldSize < 1) return 'no workers on this node';
  if (h.runId !== null && h.runId !== config.runId) return `--run-id ${h.runId} differs from node 0's ${config.runId}`;
  return undefined;
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      // A name that does not resolve, or an address of another host: the address is wrong, not the port.
      const wrongAddress = ['ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'].includes(e.code ?? '');
      const hint = wrongAddress
        ? "pass --master-addr with node 0's own address or a name that resolves to it (under srun: the step's first host)"
        : 'pick a --master-port whose port and the next one are free on node 0';
      reject(new ConfigError(`cannot listen on ${host}:${port} for the other launchers (${e.code ?? e.message})`, hint));
    });
    server.listen({ host, port, exclusive: true }, resolve);
  });
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(new CommError(`interrupted by ${String(signal.reason)} while the nodes were joining`));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

/** Node 0: admit the other nodes' launchers, then run the Coordinator. Resolves once all joined. */
export async function hostRun(config: LaunchConfig, emit: EventSink, abort: AbortSignal): Promise<Rendezvous> {
  const port = controlPort(config.masterPort);
  const address = `${config.masterAddr}:${port}`;
  const peers = new Map<number, { channel: SignedChannel; localWorldSize: number }>();
  let coordinator: Coordinator | undefined;
  let joined: () => void = () => {};
  const allJoined = new Promise<void>((resolve) => {
    joined = resolve;
  });

  const admit = async (socket: Socket): Promise<void> => {
    const admitted = await handshakeAsHost(socket, config.secret, readHello, emit, (hello) =>
      coordinator !== undefined ? 'the run has already formed' : mismatch(hello, config, new Set(peers.keys())),
    );
    if (admitted === undefined) return;
    const { hello, channel, from } = admitted;
    const rank = hello.nodeRank;
    peers.set(rank, { channel, localWorldSize: hello.localWorldSize });
    channel.onMessage((body) => {
      const msg = asToCoordinator(body);
      if (msg !== undefined) coordinator?.receive(rank, msg);
    });
    channel.onClose((why) => {
      if (coordinator !== undefined) coordinator.lost(rank, why);
      else peers.delete(rank);
    });
    emit({ kind: 'node_joined', nodeRank: rank, from });
    emit({ kind: 'waiting_for_nodes', joined: peers.size + 1, nnodes: config.nnodes, address });
    if (peers.size === config.nnodes - 1) joined();
  };

  const server = createServer((socket) => void admit(socket).catch(() => socket.destroy()));
  await listen(server, config.masterAddr, port);
  const closeAll = async (): Promise<void> => {
    server.close();
    await Promise.all([...peers.values()].map((p) => p.channel.close()));
  };
  emit({ kind: 'waiting_for_nodes', joined: 1, nnodes: config.nnodes, address });
  try {
    await Promise.race([
      allJoined,
      aborted(abort),
      // Infinity (--join-timeout 0 or inf): never; beyond 2^31 ms the timer is chained, not fired at once.
      sleep(config.joinTimeoutMs, { ref: false }).then(() => {
        const missing = Array.from({ length: config.nnodes - 1 }, (_, i) => i + 1).filter((r) => !peers.has(r));
        throw new CommError(
          `node(s) ${missing.join(', ')} did not join within ${config.joinTimeoutMs / 1000} s`,
          `start rosedist --nnodes ${config.nnodes} --node-rank K --master-addr ${config.masterAddr} --master-port ${config.masterPort} on each missing node`,
        );
      }),
    ]);
  } catch (e) {
    await closeAll();
    throw e;
  }
  const localWorldSizes = [config.nprocPerNode, ...Array.from({ length: config.nnodes - 1 }, (_, i) => peers.get(i + 1)?.localWorldSize ?? 0)];
  const layout = { runId: config.runId, worldSize: localWorldSizes.reduce((a, b) => a + b, 0), localWorldSizes };
  const client: NodeClient = new NodeClient((msg) => queueMicrotask(() => coordinator?.receive(0, msg)), closeAll);
  const c = new Coordinator({ layout, maxRestarts: config.maxRestarts }, (node, msg) => {
    if (node === 0) queueMicrotask(() => client.deliver(msg));
    else peers.get(node)?.channel.send(msg);
  });
  coordinator = c;
  c.begin();
  return client;
}

/** Connect to `host:port`; undefined when nobody listens (yet). */
function connectOnce(host: string, port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', () => {
      socket.destroy();
      resolve(undefined);
    });
  });
}

/**
 * A connection to host:port, retried every RETRY_MS until one is made; after `timeoutMs` without
 * one, rejects with `timedOut()`; on `abort`, with its reason (aborted).
 */
export async function connectWithin(host: string, port: number, timeoutMs: number, abort: AbortSignal, timedOut: () => Error): Promise<Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (abort.aborted) return aborted(abort);
    const socket = await connectOnce(host, port);
    if (socket !== undefined) return socket;
    if (Date.now() > deadline) throw timedOut();
    // One listener at a time on `abort`, removed when the sleep ends (not one more per retry).
    await sleep(RETRY_MS, { signal: abort });
  }
}

/** Node k > 0: join node 0's run. Resolves once welcome; rejects on refusal or timeout. */
export async function joinRun(config: LaunchConfig, abort: AbortSignal): Promise<Rendezvous> {
  const port = controlPort(config.masterPort);
  const socket = await connectWithin(config.masterAddr, port, config.joinTimeoutMs, abort, () => {
    return new CommError(
      `node 0 did not answer at ${config.masterAddr}:${port} within ${config.joinTimeoutMs / 1000} s`,
      'start the launcher of node 0, and pass every node the same --master-addr and --master-port',
    );
  });
  return handshakeAsNode(socket, config.secret, {
    refusedBy: `node 0 at ${config.masterAddr}:${port}`,
    fix: 'start every node with the same --nnodes, --max-restarts, --run-id and secret, each with its own --node-rank',
    hello: {
      nodeRank: config.nodeRank,
      nnodes: config.nnodes,
      localWorldSize: config.nprocPerNode,
      maxRestarts: config.maxRestarts,
      runId: config.runIdGiven ? config.runId : null,
    },
    lost: (why) => `lost contact with node 0's launcher (${why})`,
  });
}

/**
 * Node 0's side of a launcher's handshake (handshakeAsNode is the other side): the challenge, the
 * signed hello (`read` checks its mac, fields and nonce), `check` (a reason to refuse it, or
 * undefined), the signed welcome, then a SignedChannel with heartbeats (a node cut off without a
 * FIN — dead link, frozen host — is lost after HEARTBEAT_TIMEOUT_MS). Resolves with the hello, the
 * channel and the peer's address, or undefined once the node was refused: a `rejected_connection`
 * event says why and the socket is dropped after REFUSE_LINGER_MS (a peer that never reads would
 * keep it half-closed).
 */
export async function handshakeAsHost<H extends { readonly nonce: string }>(
  socket: Socket,
  secret: string,
  read: (line: string, secret: string, serverNonce: string) => H | string,
  emit: EventSink,
  check: (hello: H) => string | undefined,
): Promise<{ hello: H; channel: SignedChannel; from: string } | undefined> {
  const from = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  socket.on('error', () => {});
  const refuse = (reason: string, reply: string | undefined): undefined => {
    emit({ kind: 'rejected_connection', from, reason });
    if (reply === undefined) socket.end();
    else socket.end(reply);
    setTimeout(() => socket.destroy(), REFUSE_LINGER_MS).unref();
    return undefined;
  };
  const reader = new LineReader(socket, MAX_HELLO);
  const nonce = randomBytes(16).toString('hex');
  socket.write(`${JSON.stringify({ type: 'challenge', version: VERSION, nonce })}\n`);
  const line = await reader.next(HANDSHAKE_TIMEOUT_MS);
  if (line === undefined) return refuse('no hello', undefined);
  const hello = read(line, secret, nonce);
  if (typeof hello === 'string') return refuse(hello, `${JSON.stringify({ type: 'denied', reason: hello })}\n`);
  const problem = check(hello);
  if (problem !== undefined) return refuse(problem, signedLine(secret, { type: 'reject', nonce: hello.nonce, reason: problem }));
  socket.write(signedLine(secret, { type: 'welcome', nonce: hello.nonce }));
  const keys = channelKeys(secret, nonce, hello.nonce);
  const channel = new SignedChannel(socket, reader, keys.toClient, keys.toServer);
  channel.keepAlive(HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS);
  return { hello, channel, from };
}

/** How one kind of run joins its host: its name in errors, the fix, the hello's own fields, the loss message. */
export interface JoinTerms {
  readonly refusedBy: string;
  readonly fix: string;
  readonly hello: Record<string, unknown>;
  readonly lost: (why: string) => string;
}

/**
 * The joining side of the handshake on a connected socket (fixed and elastic runs alike): the
 * host's challenge, our signed hello, its signed welcome; then the signed channel with heartbeats,
 * as a NodeClient. A refusal destroys the socket and throws a ConfigError naming the host.
 */
export async function handshakeAsNode(socket: Socket, secret: string, terms: JoinTerms): Promise<NodeClient> {
  socket.on('error', () => {});
  const reader = new LineReader(socket);
  const refused = (why: string): never => {
    socket.destroy();
    throw new ConfigError(`${terms.refusedBy} refused this launcher: ${why}`, terms.fix);
  };
  const first = await reader.next(HANDSHAKE_TIMEOUT_MS);
  const challenge = first === undefined ? undefined : parseObject(first);
  if (challenge?.type !== 'challenge' || challenge.version !== VERSION || typeof challenge.nonce !== 'string') {
    return refused('it did not speak the rosedist control protocol (is something else on that port?)');
  }
  const serverNonce = challenge.nonce;
  const nonce = randomBytes(16).toString('hex');
  socket.write(signedLine(secret, { type: 'hello', version: VERSION, serverNonce, nonce, ...terms.hello }));
  const answer = await reader.next(HANDSHAKE_TIMEOUT_MS);
  if (answer === undefined) return refused('it closed the connection during the handshake');
  const reply = openSigned(answer, secret);
  if (typeof reply === 'string') {
    const denied = parseObject(answer)?.reason;
    return refused(typeof denied === 'string' ? denied : `its answer failed: ${reply}`);
  }
  if (reply.nonce !== nonce) return refused('its answer was not for this handshake');
  if (reply.type !== 'welcome') return refused(typeof reply.reason === 'string' ? reply.reason : 'no reason given');
  const keys = channelKeys(secret, serverNonce, nonce);
  const channel = new SignedChannel(socket, reader, keys.toServer, keys.toClient);
  channel.keepAlive(HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS);
  const client = new NodeClient(
    (msg) => channel.send(msg),
    () => channel.close(),
  );
  channel.onMessage((body) => {
    const msg = asToNode(body);
    if (msg !== undefined) client.deliver(msg);
  });
  channel.onClose((why) => client.lostContact(terms.lost(why)));
  return client;
}
