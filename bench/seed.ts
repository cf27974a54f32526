// The reference: the stack nanocdn replaces, built as that setup built it,
// from Debian's packages. Two nginx nodes (each serving its own files and
// the replicas of the other's, WebDAV PUT with Basic auth against an
// apr1-MD5 htpasswd, "409 if the file exists" checked in the rewrite phase),
// an haproxy front without cache (uploads round-robin over the nodes, reads
// routed to the owner with the other node as backup), and per node an
// lsyncd that pushes its files to the other node's rsync daemon. Our own
// prefix folders and free loopback ports: system services are not touched.

import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { freePort, GiveUp, tcpConnect, until } from "./net.ts";
import { type Memory, nodeMemory, start, type Started, sumMemory, treeCpuSeconds } from "./procs.ts";

/** Requests with this header set to 1 are left out of nginx's access log. */
export const NO_LOG_HEADER = "X-Bench-No-Log";

export interface SeedNode {
  id: string;
  /** nginx of this node, reached directly. */
  url: string;
  /** `files/`: `<id>/pub/…` are this node's files, the other ids its replicas. */
  files: string;
}

export interface SeedStack {
  nodes: SeedNode[];
  /** The haproxy front. */
  frontUrl: string;
  /** nginx processes per node: master + workers. */
  nginxWorkers: number;
  lsyncdDelay: number;
  /** Restarts both lsyncd with `delay` (seconds), and waits until their start-up sync has pushed everything. */
  setLsyncdDelay(delay: number): Promise<void>;
  /**
   * Waits until lsyncd has pushed every change and the stack idles; the ms
   * that took. After a PUT load lsyncd works on for a minute or more, and
   * nothing else may be measured on the same cores meanwhile.
   */
  settle(): Promise<number>;
  /** Every process of the stack. */
  memory(): Memory;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

const SETTLE_POLL_MS = 500;

const mimeTypes = () => (existsSync("/etc/nginx/mime.types") ? "include /etc/nginx/mime.types;" : "types { application/octet-stream bin; }");

function nginxConfig(o: { dir: string; id: string; port: number; files: string; htpasswd: string }): string {
  const upload = (auth: boolean) => `
      alias ${o.files}/${o.id}/$1/$2;
      client_body_temp_path ${o.dir}/client_body;
      create_full_put_path on;
      client_max_body_size 1g;
      dav_methods PUT;
      dav_access user:rw group:r all:r;
      ${auth ? `auth_basic "private";\n      auth_basic_user_file ${o.htpasswd};` : ""}
      if (-f $request_filename) { return 409; }`;
  return `# Written by bench/seed.ts for one benchmark run.
${process.getuid?.() === 0 ? "user root;  # the served trees live in the benchmark's private temp folder" : ""}
worker_processes auto;
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log warn;
events { worker_connections 4096; }
http {
  # As Debian's /etc/nginx/nginx.conf has them.
  sendfile on;
  tcp_nopush on;
  ${mimeTypes()}
  default_type application/octet-stream;
  map $http_${NO_LOG_HEADER.toLowerCase().replaceAll("-", "_")} $loggable {
    default 1;
    "1" 0;
  }
  access_log ${o.dir}/access.log combined if=$loggable;
  client_body_temp_path ${o.dir}/client_body;
  proxy_temp_path ${o.dir}/proxy_temp;
  fastcgi_temp_path ${o.dir}/fastcgi_temp;
  uwsgi_temp_path ${o.dir}/uwsgi_temp;
  scgi_temp_path ${o.dir}/scgi_temp;

  server {
    listen 127.0.0.1:${o.port};
    location = /check/ { access_log off; return 200 "ok\\n"; }
    location ~ ^/upload/(pub|priv)/(.*)$ {${upload(true)}
    }
    # Not part of the setup: the same without auth_basic, to show what checking it costs.
    location ~ ^/upload-noauth/(pub|priv)/(.*)$ {${upload(false)}
    }
    location ~ ^/${o.id}/pub/ {
      root ${o.files};
      expires 7d;
    }
    # Another node's file: a miss may be a file not replicated yet, so 503, never 404.
    location ~ ^/[^/]+/pub/ {
      root ${o.files};
      expires 7d;
      error_page 404 =503 /503.html;
    }
    location = /503.html { internal; return 503; }
  }
}
`;
}

function haproxyConfig(o: { dir: string; port: number; nodes: { id: string; port: number }[] }): string {
  const servers = (primary?: string) =>
    o.nodes.map((n) => `  server ${n.id} 127.0.0.1:${n.port} id ${n.id} check${primary !== undefined && n.id !== primary ? " backup" : ""}`).join("\n");
  const checks = `  option httpchk GET /check/
  http-check expect status 200
  default-server inter 1s fall 5 rise 2
  timeout check 3s`;
  return `# Written by bench/seed.ts for one benchmark run.
global
  maxconn 4096
  pidfile ${o.dir}/haproxy.pid
defaults
  mode http
  timeout connect 10s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend front
  bind 127.0.0.1:${o.port}
  acl upload path_beg /upload/
  use_backend upload if METH_PUT upload
${o.nodes.map((n) => `  use_backend read_${n.id} if { path_beg /${n.id}/ } !METH_PUT`).join("\n")}
backend upload
  balance roundrobin
  option redispatch
  retries 2
${checks}
${o.nodes.map((n) => `  http-response replace-header Location ^(https?://[^/]+)?/upload/(.*)$ /${n.id}/\\2 if { srv_id ${n.id} }`).join("\n")}
${servers()}
${o.nodes
  .map(
    (n) => `backend read_${n.id}
${checks}
${servers(n.id)}`,
  )
  .join("\n")}
`;
}

function rsyncdConfig(o: { dir: string; port: number; files: string }): string {
  return `# Written by bench/seed.ts: the peer's lsyncd pushes into files/ here.
port = ${o.port}
address = 127.0.0.1
pid file = ${o.dir}/rsyncd.pid
log file = ${o.dir}/rsyncd.log
use chroot = no
[files]
  path = ${o.files}
  read only = no
${process.getuid?.() === 0 ? "  uid = 0\n  gid = 0" : ""}
`;
}

function lsyncdConfig(o: { dir: string; id: string; files: string; target: string; delay: number }): string {
  return `-- Written by bench/seed.ts.
settings { logfile = "${o.dir}/lsyncd.log", statusFile = "${o.dir}/lsyncd.status", statusInterval = 1, nodaemon = true }
sync { default.rsync, source = "${o.files}/${o.id}", target = "${o.target}", delay = ${o.delay}, delete = true }
`;
}

async function waitListening(what: string, proc: Started, ports: number[], log: () => Promise<string>): Promise<void> {
  let ended = false;
  void proc.exited.then(() => (ended = true));
  await until(
    `${what} to listen`,
    async () => {
      if (ended) throw new GiveUp(`${what} exited`);
      await Promise.all(ports.map((p) => tcpConnect(p)));
      return true;
    },
    10_000,
  ).catch(async (error) => {
    throw new Error(`${(error as Error).message}\n${await log()}`);
  });
}

/** Output of a process and, if it has one, its log file: for errors when it does not start. */
function collect(proc: Started, file?: string): () => Promise<string> {
  let text = "";
  proc.child.stdout?.on("data", (c: Buffer) => (text += c.toString()));
  proc.child.stderr?.on("data", (c: Buffer) => (text += c.toString()));
  return async () => `${text}${file ? await readFile(file, "utf8").catch(() => "") : ""}`;
}

export async function startSeedStack(options: { dir: string; htpasswd: string; lsyncdDelay: number }): Promise<SeedStack> {
  const ids = ["1", "2"];
  // With the name of the long-lived processes under each (a stack's memory leaves out rsync runs, as a node's does).
  const procs: { proc: Started; comm: string }[] = [];
  let lsyncds: Started[] = [];
  const all = () => [...procs, ...lsyncds.map((proc) => ({ proc, comm: "lsyncd" }))];
  const stopAll = async () => {
    await Promise.all(all().map(({ proc }) => proc.stop(5000)));
  };
  try {
    const nodes: (SeedNode & { dir: string; port: number; rsyncPort: number })[] = [];
    for (const id of ids) {
      const dir = join(options.dir, `node${id}`);
      const files = join(dir, "files");
      for (const sub of [files, ...ids.map((i) => join(files, i, "pub")), join(dir, "client_body")]) await mkdir(sub, { recursive: true });
      const [port, rsyncPort] = [await freePort(), await freePort()];
      nodes.push({ id, url: `http://127.0.0.1:${port}`, files, dir, port, rsyncPort });
    }
    for (const node of nodes) {
      const conf = join(node.dir, "nginx.conf");
      await writeFile(conf, nginxConfig({ dir: node.dir, id: node.id, port: node.port, files: node.files, htpasswd: options.htpasswd }));
      // -e: the error log before the config is read (else /var/log/nginx, not ours).
      const args = ["-e", join(node.dir, "error.log"), "-p", node.dir, "-c", conf, "-g", "daemon off;"];
      const test = start("nginx -t", "nginx", [...args, "-t", "-q"], { stdio: ["ignore", "ignore", "pipe"] });
      const testLog = collect(test);
      if ((await test.exited) !== 0) throw new Error(`nginx rejected the benchmark config:\n${await testLog()}`);
      // SIGQUIT: graceful stop of master and workers.
      const nginx = start(`nginx ${node.id}`, "nginx", args, { stdio: ["ignore", "ignore", "pipe"], stopSignal: "SIGQUIT" });
      procs.push({ proc: nginx, comm: "nginx" });
      await waitListening(`nginx ${node.id}`, nginx, [node.port], collect(nginx, join(node.dir, "error.log")));

      const rsyncdConf = join(node.dir, "rsyncd.conf");
      await writeFile(rsyncdConf, rsyncdConfig({ dir: node.dir, port: node.rsyncPort, files: node.files }));
      const rsyncd = start(`rsync daemon ${node.id}`, "rsync", ["--daemon", "--no-detach", `--config=${rsyncdConf}`], { stdio: ["ignore", "pipe", "pipe"] });
      // Only the daemon itself: what it forks are the transfers.
      procs.push({ proc: rsyncd, comm: "" });
      await waitListening(`rsync daemon ${node.id}`, rsyncd, [node.rsyncPort], collect(rsyncd, join(node.dir, "rsyncd.log")));
    }
    const frontPort = await freePort();
    const frontDir = join(options.dir, "front");
    await mkdir(frontDir, { recursive: true });
    const haproxyConf = join(frontDir, "haproxy.cfg");
    await writeFile(haproxyConf, haproxyConfig({ dir: frontDir, port: frontPort, nodes }));
    const check = start("haproxy -c", "haproxy", ["-c", "-q", "-f", haproxyConf], { stdio: ["ignore", "pipe", "pipe"] });
    const checkLog = collect(check);
    if ((await check.exited) !== 0) throw new Error(`haproxy rejected the benchmark config:\n${await checkLog()}`);
    // -Ws: master-worker mode in the foreground; SIGUSR1 is its graceful stop.
    const haproxy = start("haproxy", "haproxy", ["-Ws", "-f", haproxyConf], { stdio: ["ignore", "pipe", "pipe"], stopSignal: "SIGUSR1" });
    procs.push({ proc: haproxy, comm: "haproxy" });
    await waitListening("haproxy", haproxy, [frontPort], collect(haproxy));
    // haproxy routes to a server once its health check passed (rise 2, every second).
    await writeFile(join(nodes[0]!.files, "1", "pub", "front-probe.txt"), "ok\n");
    await until(
      "haproxy to see the nginx nodes up",
      async () => {
        const r = await fetch(`http://127.0.0.1:${frontPort}/1/pub/front-probe.txt`);
        await r.body?.cancel();
        return r.status === 200;
      },
      15_000,
      200,
    );

    const cpuSeconds = () => all().reduce((sum, { proc }) => sum + treeCpuSeconds(proc.pid), 0);
    const settle = async () => {
      const started = Date.now();
      // lsyncd writes its status file once a second at most, and reads the
      // kernel's queue of file events only as fast as it can: a "0 delays"
      // counts once the whole stack spent under 2 % of a core between two looks.
      let cpu: number | undefined;
      await until(
        "lsyncd to have nothing left to push",
        async () => {
          const [before, now] = [cpu, cpuSeconds()];
          cpu = now;
          if (before === undefined || now - before > 0.02 * (SETTLE_POLL_MS / 1000)) return false;
          for (const node of nodes) {
            const status = await readFile(join(node.dir, "lsyncd.status"), "utf8").catch(() => "");
            if (!/There are 0 delays/.test(status)) return false;
          }
          return true;
        },
        900_000,
        SETTLE_POLL_MS,
      );
      return Date.now() - started;
    };
    const startLsyncd = async (delay: number) => {
      lsyncds = [];
      for (const node of nodes) {
        const peer = nodes.find((n) => n.id !== node.id)!;
        const conf = join(node.dir, "lsyncd.conf.lua");
        await writeFile(
          conf,
          lsyncdConfig({ dir: node.dir, id: node.id, files: node.files, target: `rsync://127.0.0.1:${peer.rsyncPort}/files/${node.id}/`, delay }),
        );
        // Its log goes to its logfile; with nodaemon it also writes every file name to stdout, which nobody reads.
        lsyncds.push(start(`lsyncd ${node.id}`, "lsyncd", [conf], { stdio: "ignore" }));
      }
      // lsyncd starts with a full rsync of each source, then watches.
      await settle();
    };
    await startLsyncd(options.lsyncdDelay);
    const stack: SeedStack = {
      nodes: nodes.map(({ id, url, files }) => ({ id, url, files })),
      frontUrl: `http://127.0.0.1:${frontPort}`,
      nginxWorkers: availableParallelism(),
      lsyncdDelay: options.lsyncdDelay,
      async setLsyncdDelay(delay) {
        await Promise.all(lsyncds.map((p) => p.stop(5000)));
        await startLsyncd(delay);
        stack.lsyncdDelay = delay;
      },
      memory: () => sumMemory(all().map(({ proc, comm }) => nodeMemory(proc.pid, comm))),
      settle,
      // Whole trees: the rsync runs of lsyncd and of the receiving daemons are the stack's replication work.
      cpuSeconds,
      stop: stopAll,
    };
    return stack;
  } catch (error) {
    await stopAll();
    throw error;
  }
}
