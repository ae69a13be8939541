/**
 * The network side of an elastic run (`--nnodes MIN:MAX`; the rounds are launcher/elastic.ts's).
 *
 * Every launcher first tries to listen on master-addr : master-port + 1. The one that can hosts
 * the rendezvous and is node 0 (its rank-0 worker listens on master-addr : master-port); on other
 * hosts the address is not theirs (EADDRNOTAVAIL), and on a shared host the port is taken
 * (EADDRINUSE): they connect, retrying until --rdzv-timeout, and shake hands as in
 * launcher/rendezvous.ts (challenge, hello and answer signed with the run's secret, nonces against
 * replay; a wrong secret is denied), with an elastic hello:
 *   {"type":"hello","version":1,"serverNonce":..,"nonce":..,"elastic":[MIN,MAX],"host":..,"pid":..,
 *    "localWorldSize":..,"maxRestarts":..,"runId":..|null}
 * Unlike a fixed-size run, node 0 admits launchers at any time: a newcomer waits for the next round.
 * Both sides send a heartbeat every HEARTBEAT_MS; a side silent for HEARTBEAT_TIMEOUT_MS (as
 * torchrun's c10d keep-alive: 5 s, 3 missed) is lost, like one whose connection closed.
 *
 * The host's role does not move: it holds the coordinator's state (rounds, restarts spent) and
 * master-addr, the address that every worker's rendezvous dials, is its address. Moving it would
 * need a new address agreed by all (torchrun's c10d store has the same single host, and its loss
 * ends a torchrun job too). So a lost node 0 ends the run on every other node, naming it.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { CommError, ConfigError } from '../shared/errors.js';
import type { LaunchConfig } from './config.js';
import { HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS, type SignedChannel } from './control_channel.js';
import { NodeClient, type Rendezvous } from './coordinator_client.js';
import { ElasticCoordinator, HOST_ID } from './elastic.js';
import type { EventSink } from './events.js';
import { asToCoordinator } from './protocol.js';
import { connectWithin, handshakeAsHost, handshakeAsNode, controlPort, openSigned, termsMismatch, VERSION } from './rendezvous.js';

export { HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS };

interface ElasticHello {
  readonly nonce: string;
  readonly range: readonly [number, number];
  readonly host: string;
  readonly pid: number;
  readonly localWorldSize: number;
  readonly maxRestarts: number;
  readonly runId: string | null;
}

function readHello(line: string, secret: string, serverNonce: string): ElasticHello | string {
  const v = openSigned(line, secret);
  if (typeof v === 'string') return v;
  const range = v.elastic;
  if (!Array.isArray(range)) return 'a fixed --nnodes, but this run is elastic (--nnodes MIN:MAX)';
  const ints = [...range, v.pid, v.localWorldSize, v.maxRestarts].every((n) => Number.isSafeInteger(n)) && range.length === 2;
  if (v.type !== 'hello' || v.version !== VERSION || typeof v.nonce !== 'string' || typeof v.host !== 'string' || !ints) return 'malformed hello';
  if (v.serverNonce !== serverNonce) return 'stale hello (replayed?)';
  return { ...(v as unknown as ElasticHello), range: [range[0], range[1]], runId: typeof v.runId === 'string' ? v.runId : null };
}

function mismatch(h: ElasticHello, config: LaunchConfig): string | undefined {
  const e = config.elastic;
  if (e === undefined) return 'this launcher is not elastic';
  if (h.range[0] !== e.minNodes || h.range[1] !== e.maxNodes) return `--nnodes ${h.range.join(':')} differs from node 0's ${e.minNodes}:${e.maxNodes}`;
  return termsMismatch(h, config);
}

/** Listen if this host can; false when the address is another host's or the port is taken. */
function tryListen(server: Server, host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      if (e.code === 'EADDRINUSE' || e.code === 'EADDRNOTAVAIL') return resolve(false);
      reject(
        new ConfigError(
          `cannot listen on ${host}:${port} for the rendezvous (${e.code ?? e.message})`,
          "pass --master-addr with the rendezvous host's address or a name that resolves to it",
        ),
      );
    };
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve(true);
    });
  });
}

/** Host or join the elastic run, whichever this launcher's place allows. */
export async function elasticRendezvous(config: LaunchConfig, emit: EventSink, abort: AbortSignal): Promise<Rendezvous> {
  const server = createServer();
  if (await tryListen(server, config.masterAddr, controlPort(config.masterPort))) return hostElastic(config, emit, server);
  return joinElastic(config, abort);
}

function hostElastic(config: LaunchConfig, emit: EventSink, server: Server): Rendezvous {
  const e = config.elastic as NonNullable<LaunchConfig['elastic']>;
  const say = (text: string): void => emit({ kind: 'membership', text });
  const peers = new Map<number, SignedChannel>();
  /** The host names of the connected launchers (a name is free again once its launcher left). */
  const hostOf = new Map<number, string>([[HOST_ID, hostname()]]);
  let nextId = HOST_ID + 1;
  const client: NodeClient = new NodeClient(
    (msg) => queueMicrotask(() => coordinator.receive(HOST_ID, msg)),
    async () => {
      server.close();
      await Promise.all([...peers.values()].map((c) => c.close()));
    },
  );
  const coordinator = new ElasticCoordinator(
    { runId: config.runId, ...e, maxRestarts: config.maxRestarts },
    { label: hostname(), localWorldSize: config.nprocPerNode },
    (id, msg) => (id === HOST_ID ? queueMicrotask(() => client.deliver(msg)) : peers.get(id)?.send(msg)),
    say,
  );

  const admit = async (socket: Socket): Promise<void> => {
    const admitted = await handshakeAsHost(socket, config.secret, readHello, emit, (hello) =>
      coordinator.isEnded ? 'the run has ended' : mismatch(hello, config),
    );
    if (admitted === undefined) return;
    const { hello, channel } = admitted;
    const id = nextId;
    nextId += 1;
    // Name nodes by host; launchers sharing a host (loopback runs) by host:pid.
    const label = [...hostOf.values()].includes(hello.host) ? `${hello.host}:${hello.pid}` : hello.host;
    hostOf.set(id, hello.host);
    peers.set(id, channel);
    channel.onMessage((body) => {
      const msg = asToCoordinator(body);
      if (msg !== undefined) coordinator.receive(id, msg);
    });
    channel.onClose((why) => {
      peers.delete(id);
      hostOf.delete(id);
      coordinator.lost(id, why);
    });
    coordinator.join(id, { label, localWorldSize: hello.localWorldSize });
  };
  server.on('connection', (socket: Socket) => void admit(socket).catch(() => socket.destroy()));
  say(`hosting the rendezvous on ${config.masterAddr}:${controlPort(config.masterPort)} as node 0 (--nnodes ${e.minNodes}:${e.maxNodes})`);
  coordinator.begin();
  return client;
}

async function joinElastic(config: LaunchConfig, abort: AbortSignal): Promise<Rendezvous> {
  const e = config.elastic as NonNullable<LaunchConfig['elastic']>;
  const port = controlPort(config.masterPort);
  const where = `${config.masterAddr}:${port}`;
  const socket = await connectWithin(config.masterAddr, port, e.rdzvTimeoutMs, abort, () => {
    return new CommError(
      `no rendezvous host answered at ${where} within --rdzv-timeout ${e.rdzvTimeoutMs / 1000} s`,
      'start a launcher on the host of --master-addr, and pass every node the same --master-addr and --master-port',
    );
  });
  return handshakeAsNode(socket, config.secret, {
    refusedBy: `the rendezvous host at ${where}`,
    fix: 'start every node with the same --nnodes MIN:MAX, --max-restarts, --run-id and secret',
    hello: {
      elastic: [e.minNodes, e.maxNodes],
      host: hostname(),
      pid: process.pid,
      localWorldSize: config.nprocPerNode,
      maxRestarts: config.maxRestarts,
      runId: config.runIdGiven ? config.runId : null,
    },
    lost: (why) =>
      `lost node 0, the rendezvous host at ${where} (${why}): it holds the run's coordinator and master address, so the run cannot go on without it`,
  });
}
